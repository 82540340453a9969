namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>Guards <see cref="_tails"/> and <see cref="_barrier"/>; held only to enqueue and dequeue, never
    /// across a wait.</summary>
    private readonly Lock _orderLock = new();
    /// <summary>Per collection, the completion of the last transaction ordered on it (absent: none in flight).</summary>
    private readonly Dictionary<string, Task> _tails = new(StringComparer.Ordinal);
    /// <summary>The completion of the last turn that orders after everything (fsck).</summary>
    private Task _barrier = Task.CompletedTask;

    /// <summary>
    /// A place in the submission order of some collections (or of all, when constructed with none: fsck). Taken
    /// synchronously, in call order, for all its collections at once; <see cref="Ready"/> completes when every turn
    /// taken earlier on any of them has ended. Since a turn is queued on all its collections in one step, the turns
    /// sharing a collection are in call order on every collection they share, so the waits follow call order and
    /// can never form a cycle (no lock order to keep). Turns with no collection in common never wait for each other.
    /// </summary>
    private sealed class Turn
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Turn(ObjectStore store, string[]? collections)
        {
            Collections = collections;
            List<Task> waits;
            lock (store._orderLock)
            {
                waits = [store._barrier];
                if (collections is null)
                {
                    // After every turn in flight: each collection's tail ends only after all turns before it on
                    // that collection, so the tails cover them all. Later turns wait for this one (the barrier).
                    waits.AddRange(store._tails.Values);
                    store._tails.Clear();
                    store._barrier = _done.Task;
                }
                else
                {
                    foreach (var c in collections)
                    {
                        if (store._tails.TryGetValue(c, out var tail))
                        {
                            waits.Add(tail);
                        }
                        store._tails[c] = _done.Task;
                    }
                }
            }
            Ready = Task.WhenAll(waits);
        }

        public string[]? Collections { get; }

        public Task Ready { get; }

        /// <summary>Ends the turn: later turns on its collections may go. Called once, after the turn is ready
        /// (a caller that stops waiting early ends it with <see cref="EndWhenReady"/>, never before its
        /// predecessors: a successor must not overtake them).</summary>
        public void End(ObjectStore store)
        {
            lock (store._orderLock)
            {
                if (Collections is not null)
                {
                    foreach (var c in Collections)
                    {
                        // Still the tail: nobody queued behind us on it; drop the entry so the table holds only
                        // collections with turns in flight.
                        if (store._tails.TryGetValue(c, out var tail) && tail == _done.Task)
                        {
                            store._tails.Remove(c);
                        }
                    }
                }
            }
            _done.TrySetResult();
        }

        /// <summary>Ends the turn once its predecessors have ended (for a caller that gave up waiting).</summary>
        public void EndWhenReady(ObjectStore store) =>
            _ = Ready.ContinueWith(_ => End(store), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Waits for the turn; if cancelled, the turn still ends in order (later) and the exception propagates.</summary>
    private static async Task WaitTurnAsync(ObjectStore store, Turn turn, CancellationToken ct)
    {
        try
        {
            await turn.Ready.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            turn.EndWhenReady(store);
            throw;
        }
    }
}

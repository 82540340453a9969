namespace Appliance.Client;

/// <summary>
/// Bounds the bytes of requests in flight (data sent plus data asked for): a request waits, first come first served,
/// until its bytes fit. One larger than the whole budget is clamped to it, so it runs alone rather than never.
/// (node/Store has a byte budget of its own for transactions; the two should become one in node/Platform.)
/// </summary>
internal sealed class InFlightBudget(long capacity)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Granted)> _waiters = new();
    private long _available = capacity;

    public long Capacity { get; } = capacity;

    public long InUse
    {
        get
        {
            lock (_lock)
            {
                return Capacity - _available;
            }
        }
    }

    /// <summary>Takes <paramref name="bytes"/> (clamped to the capacity) and returns what was taken, to release later.</summary>
    public async ValueTask<long> TakeAsync(long bytes, CancellationToken ct)
    {
        bytes = Math.Clamp(bytes, 0, Capacity);
        LinkedListNode<(long, TaskCompletionSource)> node;
        lock (_lock)
        {
            if (_waiters.Count == 0 && _available >= bytes)
            {
                _available -= bytes;
                return bytes;
            }
            node = _waiters.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }
        try
        {
            await node.Value.Item2.Task.WaitAsync(ct);
            return bytes;
        }
        catch (OperationCanceledException)
        {
            lock (_lock)
            {
                if (node.List is not null)
                {
                    _waiters.Remove(node);
                    // Whoever waited behind us may fit now.
                    GrantLocked(out var wake);
                    Wake(wake);
                    throw;
                }
            }
            // Lost the race: the bytes were granted as we were cancelled; give them back.
            Release(bytes);
            throw;
        }
    }

    public void Release(long bytes)
    {
        if (bytes == 0)
        {
            return;
        }
        List<TaskCompletionSource>? wake;
        lock (_lock)
        {
            _available += bytes;
            GrantLocked(out wake);
        }
        Wake(wake);
    }

    private void GrantLocked(out List<TaskCompletionSource>? wake)
    {
        wake = null;
        while (_waiters.First is { } first && _available >= first.Value.Bytes)
        {
            _available -= first.Value.Bytes;
            _waiters.RemoveFirst();
            (wake ??= []).Add(first.Value.Granted);
        }
    }

    private static void Wake(List<TaskCompletionSource>? wake)
    {
        if (wake is not null)
        {
            foreach (var t in wake)
            {
                t.TrySetResult();
            }
        }
    }
}

namespace Appliance.Platform.Concurrency;

/// <summary>
/// An async byte budget, first come first served: bounds the bytes held in flight (a store's transactions until
/// they are on the device, a client's requests until answered, an NBD connection's requests until replied to). A
/// request larger than the whole budget is clamped to it, so it runs alone rather than never; a waiter that fits
/// still waits behind an earlier one that does not (no overtaking, so a large request is never starved). Waits are
/// cancellable; a cancelled waiter lets the ones behind it through. Thread-safe.
/// </summary>
public sealed class ByteBudget
{
    private readonly Lock _lock = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Granted)> _waiters = new();
    private long _available;

    public ByteBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _available = capacity;
    }

    public long Capacity { get; }

    /// <summary>Bytes taken and not yet released.</summary>
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

    /// <summary>The most ever taken at once (tests assert the bound).</summary>
    public long HighWater { get; private set; }

    /// <summary>Whether a request waits for bytes to be released.</summary>
    public bool HasWaiters
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count > 0;
            }
        }
    }

    /// <summary>What a request of <paramref name="bytes"/> takes: at least 0, at most the capacity.</summary>
    public long Clamp(long bytes) => Math.Clamp(bytes, 0, Capacity);

    /// <summary>Takes <paramref name="bytes"/> (clamped), waiting for its turn; returns what was taken, to release.</summary>
    public async ValueTask<long> TakeAsync(long bytes, CancellationToken ct)
    {
        bytes = Clamp(bytes);
        await WaitAsync(bytes, ct);
        return bytes;
    }

    /// <summary>Takes <paramref name="bytes"/> (clamped: release the clamped amount), waiting for its turn.</summary>
    public ValueTask WaitAsync(long bytes, CancellationToken ct)
    {
        bytes = Clamp(bytes);
        LinkedListNode<(long, TaskCompletionSource)> node;
        lock (_lock)
        {
            if (_waiters.Count == 0 && _available >= bytes)
            {
                TakeLocked(bytes);
                return ValueTask.CompletedTask;
            }
            node = _waiters.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }
        return WaitSlowAsync(node, bytes, ct);
    }

    private async ValueTask WaitSlowAsync(LinkedListNode<(long Bytes, TaskCompletionSource Granted)> node, long bytes, CancellationToken ct)
    {
        try
        {
            await node.Value.Granted.Task.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            List<TaskCompletionSource>? wake = null;
            bool granted;
            lock (_lock)
            {
                granted = node.List is null;
                if (!granted)
                {
                    _waiters.Remove(node);
                    // Whoever waited behind us may fit now.
                    GrantLocked(ref wake);
                }
            }
            Wake(wake);
            if (granted)
            {
                // Lost the race: the bytes were granted just as we were cancelled; give them back.
                Release(bytes);
            }
            throw;
        }
    }

    /// <summary>Takes <paramref name="bytes"/> if they are free now and nobody waits before us.</summary>
    public bool TryTake(long bytes)
    {
        lock (_lock)
        {
            if (_waiters.Count == 0 && _available >= bytes)
            {
                TakeLocked(bytes);
                return true;
            }
            return false;
        }
    }

    public void Release(long bytes)
    {
        if (bytes == 0)
        {
            return;
        }
        List<TaskCompletionSource>? wake = null;
        lock (_lock)
        {
            if (bytes < 0 || _available + bytes > Capacity)
            {
                throw new InvalidOperationException($"released {bytes} bytes while {Capacity - _available} of {Capacity} are taken");
            }
            _available += bytes;
            GrantLocked(ref wake);
        }
        Wake(wake);
    }

    private void TakeLocked(long bytes)
    {
        _available -= bytes;
        HighWater = Math.Max(HighWater, Capacity - _available);
    }

    private void GrantLocked(ref List<TaskCompletionSource>? wake)
    {
        // Granted here, under the lock, so no other path can see the bytes free and book them twice.
        while (_waiters.First is { } first && _available >= first.Value.Bytes)
        {
            TakeLocked(first.Value.Bytes);
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

namespace Appliance.Store;

/// <summary>An async FIFO byte budget: bounds the data of transactions in flight (held in memory until it is on the
/// device). A request larger than the capacity is clamped to it, so it runs alone rather than never.</summary>
internal sealed class ByteBudget(long capacity)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Tcs)> _waiters = new();
    private long _available = capacity;

    public long Capacity { get; } = capacity;

    /// <summary>Whether a request waits for budget to be released.</summary>
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

    public long Clamp(long bytes) => Math.Min(Math.Max(bytes, 0), Capacity);

    public async ValueTask WaitAsync(long bytes, CancellationToken ct)
    {
        LinkedListNode<(long, TaskCompletionSource)> node;
        lock (_lock)
        {
            if (_waiters.Count == 0 && _available >= bytes)
            {
                _available -= bytes;
                return;
            }
            node = _waiters.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }
        try
        {
            await node.Value.Item2.Task.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            lock (_lock)
            {
                if (node.List is not null)
                {
                    _waiters.Remove(node);
                    throw;
                }
            }
            // Lost the race: the budget was granted just as we were cancelled; give it back.
            Release(bytes);
            throw;
        }
    }

    /// <summary>Takes <paramref name="bytes"/> if available now (and nobody waits before us).</summary>
    public bool TryTake(long bytes)
    {
        lock (_lock)
        {
            if (_waiters.Count == 0 && _available >= bytes)
            {
                _available -= bytes;
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
        List<TaskCompletionSource> wake = [];
        lock (_lock)
        {
            _available += bytes;
            while (_waiters.First is { } first && _available >= first.Value.Bytes)
            {
                _available -= first.Value.Bytes;
                _waiters.RemoveFirst();
                wake.Add(first.Value.Tcs);
            }
        }
        foreach (var t in wake)
        {
            t.TrySetResult();
        }
    }
}

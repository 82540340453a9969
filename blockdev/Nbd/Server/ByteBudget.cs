namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// Bytes a connection may hold in flight. One waiter at a time (the connection's reader), many releasers (the
/// request handlers). A request larger than the whole budget waits for the budget to be entirely free.
/// </summary>
internal sealed class ByteBudget(long capacity)
{
    private readonly Lock _lock = new();
    private long _inUse;
    private long _wanted;
    private TaskCompletionSource? _waiter;

    public long Capacity { get; } = capacity;

    public long InUse
    {
        get
        {
            lock (_lock)
            {
                return _inUse;
            }
        }
    }

    /// <summary>The most ever held at once (tests assert the bound).</summary>
    public long HighWater { get; private set; }

    public ValueTask WaitAsync(long bytes, CancellationToken ct)
    {
        bytes = Math.Min(bytes, Capacity);
        lock (_lock)
        {
            if (_inUse + bytes <= Capacity)
            {
                Take(bytes);
                return ValueTask.CompletedTask;
            }
            _wanted = bytes;
            _waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        return WaitSlowAsync(_waiter.Task, ct);
    }

    public void Release(long bytes)
    {
        bytes = Math.Min(bytes, Capacity);
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            _inUse -= bytes;
            if (_waiter is not null && _inUse + _wanted <= Capacity)
            {
                // Taken here, under the lock, so no other path can see the budget free and double-book it.
                Take(_wanted);
                wake = _waiter;
                _waiter = null;
            }
        }
        wake?.TrySetResult();
    }

    private void Take(long bytes)
    {
        _inUse += bytes;
        HighWater = Math.Max(HighWater, _inUse);
    }

    private static async ValueTask WaitSlowAsync(Task task, CancellationToken ct) => await task.WaitAsync(ct);
}

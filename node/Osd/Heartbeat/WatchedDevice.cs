using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Appliance.Platform.Devices;

namespace Appliance.Osd.Heartbeat;

/// <summary>
/// The OSD's watchdog on its disk: a pass-through <see cref="IBlockDevice"/> that knows how long its oldest
/// outstanding read, write, flush or discard has been running (<see cref="OldestOutstanding"/>). The heartbeater
/// stops answering pings when that passes the grace, so a disk that stops completing I/O makes a down OSD. Wrapping
/// the device keeps the store itself unchanged; the cost is one dictionary add and remove per device call.
/// </summary>
public sealed class WatchedDevice(IBlockDevice inner, TimeProvider time) : IBlockDevice
{
    private readonly ConcurrentDictionary<long, long> _started = new();
    private long _next;

    public IBlockDevice Inner => inner;
    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public int MemoryAlignment => inner.MemoryAlignment;
    public bool IsReadOnly => inner.IsReadOnly;

    /// <summary>How long the oldest I/O still outstanding has been running (zero when none is).</summary>
    public TimeSpan OldestOutstanding()
    {
        var now = time.GetTimestamp();
        var oldest = now;
        foreach (var kv in _started)
        {
            oldest = Math.Min(oldest, kv.Value);
        }
        return time.GetElapsedTime(oldest, now);
    }

    private long Begin()
    {
        var id = Interlocked.Increment(ref _next);
        _started[id] = time.GetTimestamp();
        return id;
    }

    private void End(long id) => _started.TryRemove(id, out _);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        var id = Begin();
        try
        {
            await inner.ReadAsync(offset, destination, ct);
        }
        finally
        {
            End(id);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        var id = Begin();
        try
        {
            await inner.WriteAsync(offset, source, ct);
        }
        finally
        {
            End(id);
        }
    }

    // Forwarded as one call, so the inner device still gets its batch (one io_submit on a FileDevice).
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteManyAsync(IReadOnlyList<(long Offset, ReadOnlyMemory<byte> Source)> writes, CancellationToken ct = default)
    {
        var id = Begin();
        try
        {
            await inner.WriteManyAsync(writes, ct);
        }
        finally
        {
            End(id);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(CancellationToken ct = default)
    {
        var id = Begin();
        try
        {
            await inner.FlushAsync(ct);
        }
        finally
        {
            End(id);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default)
    {
        var id = Begin();
        try
        {
            await inner.DiscardAsync(offset, length, ct);
        }
        finally
        {
            End(id);
        }
    }

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

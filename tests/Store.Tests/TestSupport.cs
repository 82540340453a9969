using Appliance.Platform.Devices;
using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>Seeds, devices and small helpers shared by the store tests.</summary>
public static class TestSupport
{
    /// <summary>The seed of randomized tests: APPLIANCE_SEED if set, else a fresh one. Printed so a failure replays.</summary>
    public static int Seed(ITestOutputHelper output, string test) => TestSeed.Get(test, output);

    public static bool Soak => TestSeed.Soak;

    /// <summary>A small store geometry for tests: a short journal (wraps and checkpoints often).</summary>
    public static MkfsOptions Small(long journal = 512 << 10, long checkpoint = 128 << 10) =>
        new() { JournalBytes = journal, CheckpointBytes = checkpoint, ClusterId = Guid.NewGuid(), OsdId = 3 };

    public static async Task<MemoryDevice> NewMemoryStoreAsync(long size = 8 << 20, MkfsOptions? options = null, int blockSize = 4096)
    {
        var dev = new MemoryDevice(size, blockSize);
        await ObjectStore.MkfsAsync(dev, options ?? Small());
        return dev;
    }

    public static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }
}

/// <summary>Passes every call through after yielding, so the store's tasks interleave with the test's (a memory
/// device otherwise completes everything synchronously and a "random moment" would always be the same one).</summary>
public sealed class YieldingDevice(IBlockDevice inner, int seed) : IBlockDevice
{
    private readonly Random _random = new(seed);

    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public int MemoryAlignment => inner.MemoryAlignment;
    public bool IsReadOnly => inner.IsReadOnly;

    private async ValueTask YieldAsync()
    {
        int n;
        lock (_random)
        {
            n = _random.Next(3);
        }
        for (var i = 0; i < n; i++)
        {
            await Task.Yield();
        }
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        await YieldAsync();
        await inner.ReadAsync(offset, destination, ct);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        await YieldAsync();
        await inner.WriteAsync(offset, source, ct);
    }

    public async ValueTask FlushAsync(CancellationToken ct = default)
    {
        await YieldAsync();
        await inner.FlushAsync(ct);
    }

    public ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default) => inner.DiscardAsync(offset, length, ct);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>Passes every call through and counts the reads (calls and bytes). Disposing it leaves the inner device
/// to its owner (a test mounts it again).</summary>
public sealed class CountingDevice(IBlockDevice inner) : IBlockDevice
{
    private long _reads;
    private long _bytesRead;

    public long Reads => Interlocked.Read(ref _reads);
    public long BytesRead => Interlocked.Read(ref _bytesRead);
    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public int MemoryAlignment => inner.MemoryAlignment;
    public bool IsReadOnly => inner.IsReadOnly;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, destination.Length);
        return inner.ReadAsync(offset, destination, ct);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default) => inner.WriteAsync(offset, source, ct);

    public ValueTask WriteManyAsync(IReadOnlyList<(long Offset, ReadOnlyMemory<byte> Source)> writes, CancellationToken ct = default) =>
        inner.WriteManyAsync(writes, ct);

    public ValueTask FlushAsync(CancellationToken ct = default) => inner.FlushAsync(ct);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default) => inner.DiscardAsync(offset, length, ct);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

using Appliance.Platform.Devices;

namespace Appliance.Platform.Tests.Devices;

/// <summary>The behaviour every IBlockDevice must have, run against each implementation.</summary>
public abstract class DeviceContract
{
    protected abstract Task<(IBlockDevice Device, IAsyncDisposable Owner)> OpenAsync(long size);

    private static AlignedBuffer Pattern(int length, int seed)
    {
        var b = new AlignedBuffer(length);
        new Random(seed).NextBytes(b.GetSpan());
        return b;
    }

    [Fact]
    public async Task Written_data_reads_back_and_unwritten_reads_as_zero()
    {
        var (dev, owner) = await OpenAsync(8 << 20);
        await using var _ = owner;
        using var data = Pattern(64 << 10, 1);
        await dev.WriteAsync(1 << 20, data.Memory);
        await dev.FlushAsync();
        using var back = new AlignedBuffer(64 << 10);
        await dev.ReadAsync(1 << 20, back.Memory);
        Assert.True(back.GetSpan().SequenceEqual(data.GetSpan()));
        await dev.ReadAsync(4 << 20, back.Memory);
        Assert.True(back.GetSpan().IndexOfAnyExcept((byte)0) < 0, "a never-written range must read as zeros");
    }

    [Fact]
    public async Task Many_concurrent_writes_all_land()
    {
        var (dev, owner) = await OpenAsync(8 << 20);
        await using var _ = owner;
        var buffers = Enumerable.Range(0, 64).Select(i => Pattern(4096, 100 + i)).ToArray();
        await Task.WhenAll(buffers.Select((b, i) => dev.WriteAsync(i * 8192L, b.Memory).AsTask()));
        await dev.FlushAsync();
        using var back = new AlignedBuffer(4096);
        for (var i = 0; i < buffers.Length; i++)
        {
            await dev.ReadAsync(i * 8192L, back.Memory);
            Assert.True(back.GetSpan().SequenceEqual(buffers[i].GetSpan()), $"block {i}");
            buffers[i].Dispose();
        }
    }

    [Fact]
    public async Task A_batch_of_writes_larger_than_the_queue_all_land()
    {
        var (dev, owner) = await OpenAsync(8 << 20);
        await using var _ = owner;
        // 300 writes of 1 to 3 blocks at scattered offsets, one buffer (slices of it), handed over as one batch.
        var rng = new Random(5);
        using var data = Pattern(300 * 3 * 4096, 9);
        var writes = new List<(long, ReadOnlyMemory<byte>)>();
        var at = 0;
        for (var i = 0; i < 300; i++)
        {
            var len = rng.Next(1, 4) * 4096;
            writes.Add((i * 3L * 4096 + (3 * 4096 - len), data.Memory.Slice(at, len)));
            at += len;
        }
        await dev.WriteManyAsync(writes);
        await dev.FlushAsync();
        using var back = new AlignedBuffer(3 * 4096);
        foreach (var (offset, source) in writes)
        {
            await dev.ReadAsync(offset, back.Memory[..source.Length]);
            Assert.True(back.GetSpan()[..source.Length].SequenceEqual(source.Span), $"write at {offset}");
        }
        await dev.WriteManyAsync([]);
        await Assert.ThrowsAsync<ArgumentException>(async () => await dev.WriteManyAsync([(0, data.Memory[..4096]), (100, data.Memory[..4096])]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await dev.WriteManyAsync([(dev.Size, data.Memory[..4096])]));
    }

    [Fact]
    public async Task Misaligned_or_out_of_range_io_is_refused()
    {
        var (dev, owner) = await OpenAsync(1 << 20);
        await using var _ = owner;
        using var buf = new AlignedBuffer(8192);
        await Assert.ThrowsAsync<ArgumentException>(async () => await dev.WriteAsync(100, buf.Memory[..4096]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await dev.WriteAsync(0, buf.Memory[..100]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await dev.ReadAsync(0, buf.Memory.Slice(8, 4096)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await dev.ReadAsync(dev.Size - 4096, buf.Memory));
        var managed = new byte[4096 + 4096];
        var misaligned = managed.AsMemory(1, 4096);
        await Assert.ThrowsAsync<ArgumentException>(async () => await dev.WriteAsync(0, misaligned));
    }

    [Fact]
    public async Task Discard_is_accepted_over_whole_blocks()
    {
        var (dev, owner) = await OpenAsync(4 << 20);
        await using var _ = owner;
        using var data = Pattern(1 << 20, 7);
        await dev.WriteAsync(0, data.Memory);
        await dev.DiscardAsync(0, 1 << 20);
        await dev.FlushAsync();
        // The content after a discard is unspecified by the contract; the data after it must be untouched.
        using var back = new AlignedBuffer(4096);
        await dev.WriteAsync(1 << 20, data.Memory[..4096]);
        await dev.ReadAsync(1 << 20, back.Memory);
        Assert.True(back.GetSpan().SequenceEqual(data.GetSpan()[..4096]));
    }
}

public sealed class MemoryDeviceContract : DeviceContract
{
    protected override Task<(IBlockDevice, IAsyncDisposable)> OpenAsync(long size)
    {
        var dev = new MemoryDevice(size);
        return Task.FromResult<(IBlockDevice, IAsyncDisposable)>((dev, dev));
    }
}

public sealed class FileDeviceContract : DeviceContract
{
    protected override Task<(IBlockDevice, IAsyncDisposable)> OpenAsync(long size)
    {
        var dir = new TempDir();
        var dev = FileDevice.CreateFile(dir.File("disk"), size);
        return Task.FromResult<(IBlockDevice, IAsyncDisposable)>((dev, new Owner(dev, dir)));
    }

    private sealed class Owner(FileDevice dev, TempDir dir) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await dev.DisposeAsync();
            dir.Dispose();
        }
    }
}

public sealed class FaultInjectingDeviceContract : DeviceContract
{
    protected override Task<(IBlockDevice, IAsyncDisposable)> OpenAsync(long size)
    {
        var dev = new FaultInjectingDevice(new MemoryDevice(size), seed: 1);
        return Task.FromResult<(IBlockDevice, IAsyncDisposable)>((dev, dev));
    }
}

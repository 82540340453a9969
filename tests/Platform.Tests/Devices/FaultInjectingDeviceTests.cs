using Appliance.Platform.Devices;
using Appliance.Platform.Native;

namespace Appliance.Platform.Tests.Devices;

/// <summary>Each fault mode of the fault-injecting device, shown firing.</summary>
public sealed class FaultInjectingDeviceTests
{
    private const int Sector = 512;

    private static AlignedBuffer Filled(int length, byte value)
    {
        var b = new AlignedBuffer(length);
        b.GetSpan().Fill(value);
        return b;
    }

    private static async Task<byte[]> ReadAsync(IBlockDevice dev, long offset, int length)
    {
        using var b = new AlignedBuffer(length);
        await dev.ReadAsync(offset, b.Memory);
        return b.GetSpan().ToArray();
    }

    [Fact]
    public async Task Power_cut_drops_every_unflushed_write_and_keeps_flushed_ones()
    {
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner);
        using (var a = Filled(8192, 0xAA))
        {
            await dev.WriteAsync(0, a.Memory);
        }
        await dev.FlushAsync();
        using (var b = Filled(8192, 0xBB))
        {
            await dev.WriteAsync(4096, b.Memory);
            await dev.WriteAsync(65536, b.Memory);
        }
        Assert.Equal(2, dev.UnflushedWrites);

        var report = await dev.PowerCutAsync(PowerCutMode.DropUnflushed);

        Assert.Equal(2, report.Dropped.Count);
        Assert.Empty(report.Kept);
        Assert.True(dev.IsPoweredOff);
        var rebooted = new FaultInjectingDevice(inner);
        Assert.All(await ReadAsync(rebooted, 0, 8192), x => Assert.Equal(0xAA, x));
        Assert.All(await ReadAsync(rebooted, 8192, 4096), x => Assert.Equal(0, x));
        Assert.All(await ReadAsync(rebooted, 65536, 8192), x => Assert.Equal(0, x));
    }

    [Fact]
    public async Task After_a_power_cut_the_device_refuses_io()
    {
        var dev = new FaultInjectingDevice(new MemoryDevice(1 << 20));
        await dev.PowerCutAsync(PowerCutMode.DropUnflushed);
        using var b = Filled(4096, 1);
        await Assert.ThrowsAsync<DevicePoweredOffException>(async () => await dev.WriteAsync(0, b.Memory));
        await Assert.ThrowsAsync<DevicePoweredOffException>(async () => await dev.ReadAsync(0, b.Memory));
        await Assert.ThrowsAsync<DevicePoweredOffException>(async () => await dev.FlushAsync());
    }

    [Fact]
    public async Task Power_cut_tears_one_write_at_a_sector_boundary()
    {
        var seed = SeedFromEnvironment();
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner, seed);
        for (var i = 0; i < 4; i++)
        {
            using var w = Filled(16 * Sector, (byte)(0x10 + i));
            await dev.WriteAsync(i * 16L * Sector, w.Memory);
        }

        var report = await dev.PowerCutAsync(PowerCutMode.TearOne);

        Assert.NotNull(report.Torn);
        var (offset, length, landed) = report.Torn!.Value;
        Assert.True(landed > 0 && landed < length, $"torn write must land partly (seed {seed})");
        Assert.Equal(0, landed % Sector);
        var bytes = await ReadAsync(inner, offset, length);
        var value = (byte)(0x10 + (int)(offset / (16 * Sector)));
        Assert.All(bytes[..landed], x => Assert.Equal(value, x));
        Assert.All(bytes[landed..], x => Assert.Equal(0, x));
        // Writes before the torn one landed whole, those after it are gone.
        foreach (var (o, l) in report.Kept)
        {
            Assert.True(o < offset);
            Assert.All(await ReadAsync(inner, o, l), x => Assert.NotEqual(0, x));
        }
        foreach (var (o, l) in report.Dropped)
        {
            Assert.True(o > offset);
            Assert.All(await ReadAsync(inner, o, l), x => Assert.Equal(0, x));
        }
    }

    [Fact]
    public async Task Random_subset_cuts_leave_each_write_whole_or_absent_even_when_writes_overlap()
    {
        var baseSeed = SeedFromEnvironment();
        var outcomes = new HashSet<(bool, bool)>();
        for (var seed = baseSeed; seed < baseSeed + 40; seed++)
        {
            var inner = new MemoryDevice(1 << 20);
            var dev = new FaultInjectingDevice(inner, seed);
            using (var baseline = Filled(12288, 0x01))
            {
                await dev.WriteAsync(0, baseline.Memory);
            }
            await dev.FlushAsync();
            using (var x = Filled(8192, 0x02))
            {
                await dev.WriteAsync(0, x.Memory); // X covers [0, 8K)
            }
            using (var y = Filled(8192, 0x03))
            {
                await dev.WriteAsync(4096, y.Memory); // Y covers [4K, 12K), overlapping X in [4K, 8K)
            }

            var report = await dev.PowerCutAsync(PowerCutMode.KeepRandomSubset);

            var xKept = report.Kept.Contains((0, 8192));
            var yKept = report.Kept.Contains((4096, 8192));
            Assert.Equal(2, report.Kept.Count + report.Dropped.Count);
            outcomes.Add((xKept, yKept));
            var content = await ReadAsync(inner, 0, 12288);
            byte Expect(int block) => block switch
            {
                0 => xKept ? (byte)0x02 : (byte)0x01,
                1 => yKept ? (byte)0x03 : xKept ? (byte)0x02 : (byte)0x01,
                _ => yKept ? (byte)0x03 : (byte)0x01,
            };
            for (var block = 0; block < 3; block++)
            {
                var expected = Expect(block);
                Assert.True(content.AsSpan(block * 4096, 4096).IndexOfAnyExcept(expected) < 0,
                    $"block {block} should hold 0x{expected:x2} (X kept {xKept}, Y kept {yKept}, seed {seed})");
            }
        }
        Assert.Equal(4, outcomes.Count); // over 40 seeds every combination of landed / lost occurs
    }

    [Fact]
    public async Task A_flush_makes_earlier_writes_survive_a_cut()
    {
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner, 9);
        using var w = Filled(4096, 0x5A);
        await dev.WriteAsync(8192, w.Memory);
        await dev.FlushAsync();
        Assert.Equal(0, dev.UnflushedWrites);
        await dev.PowerCutAsync(PowerCutMode.TearOne);
        Assert.All(await ReadAsync(inner, 8192, 4096), x => Assert.Equal(0x5A, x));
    }

    [Fact]
    public async Task Corrupt_flips_exactly_one_bit_on_the_medium()
    {
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner);
        using var w = Filled(4096, 0x00);
        await dev.WriteAsync(0, w.Memory);
        await dev.FlushAsync();

        await dev.CorruptAsync(1234, 3);

        var bytes = await ReadAsync(inner, 0, 4096);
        Assert.Equal(0x08, bytes[1234]);
        Assert.Equal(1, bytes.Count(b => b != 0));
        Assert.Equal(1, dev.Counters.BitsCorruptedOnMedium);
    }

    [Fact]
    public async Task Bit_flips_on_read_change_one_bit_of_the_returned_data_but_not_the_medium()
    {
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner, 4) { ReadBitFlipProbability = 1.0 };
        using var w = Filled(4096, 0xFF);
        await dev.WriteAsync(0, w.Memory);
        var read = await ReadAsync(dev, 0, 4096);
        var flippedBits = read.Sum(b => 8 - System.Numerics.BitOperations.PopCount(b));
        Assert.Equal(1, flippedBits);
        Assert.All(await ReadAsync(inner, 0, 4096), x => Assert.Equal(0xFF, x));
        Assert.Equal(1, dev.Counters.BitsFlippedOnRead);
    }

    [Fact]
    public async Task Injected_eio_fails_matching_operations_only_and_changes_nothing()
    {
        var inner = new MemoryDevice(1 << 20);
        var dev = new FaultInjectingDevice(inner);
        dev.FailWith(FaultOp.Write, times: 2, offset: 65536, length: 4096);
        using var w = Filled(4096, 0x77);

        var e = await Assert.ThrowsAsync<PlatformIOException>(async () => await dev.WriteAsync(65536, w.Memory));
        Assert.Equal(Errno.EIO, e.Errno);
        await Assert.ThrowsAsync<PlatformIOException>(async () => await dev.WriteAsync(65536, w.Memory));
        await dev.WriteAsync(0, w.Memory); // outside the range: unaffected
        Assert.All(await ReadAsync(inner, 65536, 4096), x => Assert.Equal(0, x));
        await dev.WriteAsync(65536, w.Memory); // the rule is used up
        Assert.All(await ReadAsync(inner, 65536, 4096), x => Assert.Equal(0x77, x));
        Assert.Equal(2, dev.Counters.InjectedErrors);

        dev.FailWith(FaultOp.Flush, times: 1);
        await Assert.ThrowsAsync<PlatformIOException>(async () => await dev.FlushAsync());
        dev.FailWith(FaultOp.Read, times: 1, errno: Errno.EIO);
        await Assert.ThrowsAsync<PlatformIOException>(async () => await ReadAsync(dev, 0, 4096));
        await dev.FlushAsync();
    }

    [Fact]
    public async Task Latency_is_added_through_the_time_provider()
    {
        var time = new RecordingTimeProvider();
        var dev = new FaultInjectingDevice(new MemoryDevice(1 << 20), time: time)
        {
            WriteLatency = TimeSpan.FromMilliseconds(40),
            ReadLatency = TimeSpan.FromMilliseconds(7),
            FlushLatency = TimeSpan.FromMilliseconds(300),
        };
        using var w = Filled(4096, 1);
        await dev.WriteAsync(0, w.Memory);
        await dev.ReadAsync(0, w.Memory);
        await dev.FlushAsync();
        Assert.Equal([TimeSpan.FromMilliseconds(40), TimeSpan.FromMilliseconds(7), TimeSpan.FromMilliseconds(300)], time.Delays);
        Assert.Equal(3, dev.Counters.DelayedOperations);
    }

    private static int SeedFromEnvironment() => TestSeed.Get(nameof(FaultInjectingDeviceTests), fallback: 1);

    /// <summary>Records each delay asked for and fires the timer at once: latency is shown without waiting.</summary>
    private sealed class RecordingTimeProvider : TimeProvider
    {
        private readonly List<TimeSpan> _delays = [];

        public IReadOnlyList<TimeSpan> Delays
        {
            get
            {
                lock (_delays)
                {
                    return [.. _delays];
                }
            }
        }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                lock (_delays)
                {
                    _delays.Add(dueTime);
                }
            }
            return new ImmediateTimer(callback, state, dueTime);
        }

        private sealed class ImmediateTimer : ITimer
        {
            public ImmediateTimer(TimerCallback callback, object? state, TimeSpan dueTime)
            {
                if (dueTime != Timeout.InfiniteTimeSpan)
                {
                    ThreadPool.QueueUserWorkItem(_ => callback(state));
                }
            }

            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}

using System.Diagnostics;
using Appliance.Platform.Devices;
using Appliance.Platform.Native;

namespace Appliance.Platform.Tests.Devices;

public sealed class FileDeviceTests
{
    [Fact]
    public async Task A_new_file_device_uses_direct_io_and_keeps_data_across_reopen()
    {
        using var dir = new TempDir();
        var path = dir.File("disk");
        using var data = new AlignedBuffer(4096);
        new Random(3).NextBytes(data.GetSpan());
        await using (var dev = FileDevice.CreateFile(path, 16 << 20))
        {
            Assert.Equal(DeviceKind.RegularFile, dev.Kind);
            Assert.Equal(16L << 20, dev.Size);
            Assert.True(dev.DirectIo, "the test directory's filesystem is expected to support O_DIRECT");
            await dev.WriteAsync(12288, data.Memory);
            await dev.FlushAsync();
        }
        await using (var dev = FileDevice.Open(path))
        {
            using var back = new AlignedBuffer(4096);
            await dev.ReadAsync(12288, back.Memory);
            Assert.True(back.GetSpan().SequenceEqual(data.GetSpan()));
        }
    }

    [Fact]
    public async Task A_batch_of_writes_many_times_the_queue_depth_goes_through_a_tiny_queue()
    {
        using var dir = new TempDir();
        // Queue depth 4: batches of 2 per io_submit, each waiting for the ones before to give their slots back,
        // while other writers use the same queue.
        await using var dev = FileDevice.CreateFile(dir.File("disk"), 4 << 20, new FileDeviceOptions { QueueDepth = 4 });
        using var data = new AlignedBuffer(100 * 4096);
        new Random(3).NextBytes(data.GetSpan());
        var writes = Enumerable.Range(0, 100).Select(i => (i * 8192L, (ReadOnlyMemory<byte>)data.Memory.Slice(i * 4096, 4096))).ToList();
        var others = Enumerable.Range(0, 20).Select(i => dev.WriteAsync((2 << 20) + i * 4096L, data.Memory.Slice(i * 4096, 4096)).AsTask());
        await Task.WhenAll([dev.WriteManyAsync(writes).AsTask(), .. others]);
        using var back = new AlignedBuffer(4096);
        for (var i = 0; i < 100; i++)
        {
            await dev.ReadAsync(i * 8192L, back.Memory);
            Assert.True(back.GetSpan().SequenceEqual(data.GetSpan().Slice(i * 4096, 4096)), $"write {i}");
        }
    }

    [Fact]
    public async Task A_second_opener_of_the_same_disk_is_refused()
    {
        using var dir = new TempDir();
        await using var first = FileDevice.CreateFile(dir.File("disk"), 1 << 20);
        var e = Assert.Throws<DeviceInUseException>(() => FileDevice.Open(dir.File("disk")));
        Assert.Contains("in use by another process", e.Message);
    }

    [Fact]
    public async Task Create_never_overwrites_an_existing_file()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir.File("precious"), "data");
        var e = Assert.Throws<PlatformException>(() => FileDevice.CreateFile(dir.File("precious"), 1 << 20));
        Assert.Equal(Errno.EEXIST, e.Errno);
        Assert.Equal("data", await File.ReadAllTextAsync(dir.File("precious")));
    }

    [Fact]
    public void Opening_a_missing_disk_names_the_path_and_errno()
    {
        var e = Assert.Throws<PlatformNotFoundException>(() => FileDevice.Open("/nonexistent/appliance/disk"));
        Assert.Contains("open(/nonexistent/appliance/disk)", e.Message);
        Assert.Equal(Errno.ENOENT, e.Errno);
    }

    [Fact]
    public async Task A_read_only_device_refuses_writes()
    {
        using var dir = new TempDir();
        await (await Task.FromResult(FileDevice.CreateFile(dir.File("disk"), 1 << 20))).DisposeAsync();
        await using var dev = FileDevice.Open(dir.File("disk"), new FileDeviceOptions { ReadOnly = true });
        using var buf = new AlignedBuffer(4096);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await dev.WriteAsync(0, buf.Memory));
    }

    [Fact]
    public async Task Discard_on_a_file_punches_a_hole_that_reads_as_zeros()
    {
        using var dir = new TempDir();
        await using var dev = FileDevice.CreateFile(dir.File("disk"), 4 << 20);
        using var data = new AlignedBuffer(1 << 20);
        data.GetSpan().Fill(0xAB);
        await dev.WriteAsync(0, data.Memory);
        await dev.FlushAsync();
        await dev.DiscardAsync(0, 1 << 20);
        await dev.ReadAsync(0, data.Memory);
        Assert.True(data.GetSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public async Task A_loop_block_device_reports_its_size_and_sector_size_and_takes_discards()
    {
        Assert.True(Environment.UserName == "root", "this test needs root (losetup); the test command runs as root");
        using var dir = new TempDir();
        var backing = dir.File("backing");
        await using (var f = FileDevice.CreateFile(backing, 8 << 20))
        {
        }
        var loop = Run("losetup", "--find", "--show", backing).Trim();
        try
        {
            await using var dev = FileDevice.Open(loop);
            Assert.Equal(DeviceKind.BlockDevice, dev.Kind);
            Assert.Equal(8L << 20, dev.Size);
            Assert.Equal(512, dev.BlockSize);
            using var data = new AlignedBuffer(65536);
            new Random(5).NextBytes(data.GetSpan());
            await dev.WriteAsync(65536, data.Memory);
            await dev.FlushAsync();
            await dev.DiscardAsync(1 << 20, 1 << 20);
            using var back = new AlignedBuffer(65536);
            await dev.ReadAsync(65536, back.Memory);
            Assert.True(back.GetSpan().SequenceEqual(data.GetSpan()));
        }
        finally
        {
            Run("losetup", "-d", loop);
        }
    }

    private static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} failed: {error}");
        return output;
    }
}

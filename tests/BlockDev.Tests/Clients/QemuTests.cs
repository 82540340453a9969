namespace Appliance.BlockDev.Tests.Clients;

/// <summary>qemu-io and qemu-img (qemu-utils) against the real server.</summary>
public sealed class QemuTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Qemu_io_write_read_verify_patterns_unaligned_and_across_4MiB_boundaries()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var s = await TestServer.StartAsync(null, ("rbd/vm", 32L << 20));
        const int mib4 = 4 << 20;
        var cases = new (long Offset, int Length, int Pattern)[]
        {
            (0, 4096, 0x11), (5000, 1, 0x22), (mib4 - 1000, 3000, 0x33), (2 * mib4 - 7, 5 * 1024 * 1024 + 13, 0x44),
            (mib4 + 8192, 512, 0x55), ((32L << 20) - 4096, 4096, 0x66), (4 * mib4 - 3, 6, 0x77),
        };
        var args = new List<string> { "-f", "raw" };
        foreach (var (offset, length, pattern) in cases)
        {
            args.AddRange(["-c", $"write -P {pattern} {offset} {length}"]);
        }
        args.Add(s.UnixUri("rbd/vm"));
        var w = await Tools.RunOkAsync(qemuIo, args);
        Assert.DoesNotContain("error", w.All, StringComparison.OrdinalIgnoreCase);
        // Read back in a second process (new connection): every pattern where it was written, zeroes around it.
        args = ["-f", "raw"];
        foreach (var (offset, length, pattern) in cases)
        {
            args.AddRange(["-c", $"read -P {pattern} {offset} {length}"]);
        }
        args.AddRange(["-c", "read -P 0 8192 4096", "-c", $"read -P 0 {mib4 - 2000} 1000", "-c", $"read -P 0 {(2 * mib4) - 4096} 4089"]);
        args.Add(s.TcpUri("rbd/vm"));
        var r = await Tools.RunOkAsync(qemuIo, args);
        output.WriteLine(r.All);
        Assert.DoesNotContain("Pattern verification failed", r.All);
        Assert.DoesNotContain("error", r.All, StringComparison.OrdinalIgnoreCase);
        // And the file itself holds exactly those bytes (the server wrote where it was told).
        var file = await File.ReadAllBytesAsync(Path.Combine(s.ImageDir, "rbd/vm"));
        var expected = new byte[file.Length];
        foreach (var (offset, length, pattern) in cases)
        {
            expected.AsSpan((int)offset, length).Fill((byte)pattern);
        }
        Assert.True(expected.AsSpan().SequenceEqual(file), "image file differs from the patterns written");
    }

    [Fact]
    public async Task Qemu_io_zero_discard_flush_and_fua_writes_read_back_correctly()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var s = await TestServer.StartAsync(null, ("disk", 16L << 20));
        await Tools.RunOkAsync(qemuIo, ["-f", "raw",
            "-c", "write -P 0xaa 0 8M", "-c", "write -z 1M 1M", "-c", "write -z -u 3M 1M", "-c", "discard 5M 1M",
            "-c", "write -f -P 0xbb 6M 4097", "-c", "flush", s.UnixUri("disk")]);
        var r = await Tools.RunOkAsync(qemuIo, ["-f", "raw", "-c", "read -P 0xaa 0 1M", "-c", "read -P 0 1M 1M", "-c", "read -P 0xaa 2M 1M",
            "-c", "read -P 0 3M 1M", "-c", "read -P 0xaa 4M 1M", "-c", "read -P 0xbb 6M 4097", "-c", "read -P 0xaa 7340033 1048575", s.UnixUri("disk")]);
        Assert.DoesNotContain("Pattern verification failed", r.All);
        // discard is a hint; whatever it did, the rest of the image is intact and the discarded range reads as
        // either the old data or zeroes (our server punches a hole, so zeroes).
        r = await Tools.RunOkAsync(qemuIo, ["-f", "raw", "-c", "read -P 0 5M 1M", s.UnixUri("disk")]);
        Assert.DoesNotContain("Pattern verification failed", r.All);
    }

    [Fact]
    public async Task Qemu_img_convert_in_and_out_preserves_a_random_sparse_image()
    {
        var qemuImg = Tools.Require("qemu-img", "qemu-utils");
        var seed = Tools.Seed(output);
        await using var s = await TestServer.StartAsync(null, ("disk", 48L << 20));
        var src = Path.Combine(s.Dir, "src.raw");
        var back = Path.Combine(s.Dir, "back.raw");
        var random = new Random(seed);
        await using (var f = new FileStream(src, FileMode.CreateNew))
        {
            f.SetLength(48L << 20);
            // Random data runs with holes between them, some unaligned.
            for (var i = 0; i < 40; i++)
            {
                var chunk = new byte[random.Next(1, 1 << 20)];
                random.NextBytes(chunk);
                f.Position = random.NextInt64(0, (48L << 20) - chunk.Length);
                f.Write(chunk);
            }
        }
        await Tools.RunOkAsync(qemuImg, ["convert", "-n", "-f", "raw", "-O", "raw", src, s.UnixUri("disk")]);
        await Tools.RunOkAsync(qemuImg, ["convert", "-f", "raw", "-O", "raw", s.TcpUri("disk"), back]);
        Assert.Equal(Tools.Sha256(src), Tools.Sha256(back));
        Assert.Equal(Tools.Sha256(src), Tools.Sha256(Path.Combine(s.ImageDir, "disk")));
        var cmp = await Tools.RunOkAsync(qemuImg, ["compare", "-f", "raw", "-F", "raw", src, s.UnixUri("disk")]);
        Assert.Contains("Images are identical", cmp.Stdout);
    }
}

namespace Appliance.BlockDev.Tests.Clients;

/// <summary>nbdinfo (libnbd-bin) against the real server: export info, --list, --map.</summary>
public sealed class NbdInfoTests
{
    [Fact]
    public async Task Nbdinfo_shows_size_flags_and_block_sizes_over_tcp()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        await using var s = await TestServer.StartAsync(null, ("pool/disk1", 64L << 20));
        var r = await Tools.RunOkAsync(nbdinfo, [s.TcpUri("pool/disk1")]);
        foreach (var expected in new[]
        {
            "export-size: 67108864", "can_multi_conn: true", "can_flush: true", "can_fua: true", "can_trim: true",
            "can_zero: true", "can_fast_zero: true", "can_cache: true", "can_df: true", "is_read_only: false",
            "block_size_minimum: 1", "block_size_preferred: 4096", "block_size_maximum: 33554432", "base:allocation",
            "newstyle-fixed", "structured", "description: local image pool/disk1",
        })
        {
            Assert.Contains(expected, r.Stdout);
        }
    }

    [Fact]
    public async Task Nbdinfo_list_shows_every_export_over_the_unix_socket()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        await using var s = await TestServer.StartAsync(null, ("a", 1 << 20), ("pool/b", 2 << 20), ("pool/sub/c", 3 << 20));
        var r = await Tools.RunOkAsync(nbdinfo, ["--list", s.UnixUri("")]);
        Assert.Contains("export=\"a\"", r.Stdout);
        Assert.Contains("export=\"pool/b\"", r.Stdout);
        Assert.Contains("export=\"pool/sub/c\"", r.Stdout);
        Assert.Contains("export-size: 3145728", r.Stdout);
    }

    [Fact]
    public async Task Nbdinfo_map_shows_holes_and_data_and_follows_trim()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var s = await TestServer.StartAsync(null, ("disk", 16L << 20));
        await using (var f = new FileStream(Path.Combine(s.ImageDir, "disk"), FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            f.Position = 4 << 20;
            f.Write(Enumerable.Repeat((byte)7, 2 << 20).ToArray());
        }
        var r = await Tools.RunOkAsync(nbdinfo, ["--map", s.UnixUri("disk")]);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToList();
        Assert.Equal(["0 4194304 3 hole,zero", "4194304 2097152 0 data", "6291456 10485760 3 hole,zero"], lines);
        // TRIM through the protocol punches a hole: the map shows it.
        await Tools.RunOkAsync(qemuIo, ["-f", "raw", "-c", "discard 1M 4M", "-c", "flush", s.UnixUri("disk")]);
        r = await Tools.RunOkAsync(nbdinfo, ["--map", s.UnixUri("disk")]);
        lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToList();
        Assert.Equal(["0 5242880 3 hole,zero", "5242880 1048576 0 data", "6291456 10485760 3 hole,zero"], lines);
    }
}

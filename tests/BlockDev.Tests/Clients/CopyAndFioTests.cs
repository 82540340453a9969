using System.Diagnostics;

namespace Appliance.BlockDev.Tests.Clients;

/// <summary>nbdcopy (libnbd-bin, multi-connection) and fio's nbd engine with verification.</summary>
public sealed class CopyAndFioTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Nbdcopy_in_and_out_over_several_connections_preserves_the_data()
    {
        var nbdcopy = Tools.Require("nbdcopy", "libnbd-bin");
        var seed = Tools.Seed(output);
        await using var s = await TestServer.StartAsync(null, ("pool/copy", 40L << 20));
        var src = Path.Combine(s.Dir, "src.raw");
        var back = Path.Combine(s.Dir, "back.raw");
        var random = new Random(seed);
        var data = new byte[40 << 20];
        random.NextBytes(data.AsSpan(0, 10 << 20));
        random.NextBytes(data.AsSpan(23 << 20, (5 << 20) + 333));
        await File.WriteAllBytesAsync(src, data);
        await Tools.RunOkAsync(nbdcopy, ["--connections=4", "--requests=16", src, s.UnixUri("pool/copy")]);
        await Tools.RunOkAsync(nbdcopy, ["--connections=4", s.TcpUri("pool/copy"), back]);
        Assert.Equal(Tools.Sha256(src), Tools.Sha256(back));
        // CAN_MULTI_CONN lets nbdcopy open more than one connection per copy.
        Assert.True(s.Server.AcceptedConnections > 2, $"expected several connections, saw {s.Server.AcceptedConnections}");
    }

    [Fact]
    public async Task Fio_nbd_engine_random_writes_verify_with_crc32c()
    {
        var fio = Tools.Require("fio", "fio");
        await using var s = await TestServer.StartAsync(null, ("fio", 64L << 20));
        foreach (var (rw, bs, depth) in new[] { ("randwrite", "4k", 16), ("write", "1m", 4), ("randwrite", "64k", 32) })
        {
            var r = await Tools.RunOkAsync(fio, [
                "--name=verify", "--ioengine=nbd", $"--uri={s.UnixUri("fio")}", $"--rw={rw}", $"--bs={bs}", $"--iodepth={depth}",
                "--size=32M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0",
            ], TimeSpan.FromMinutes(3));
            Assert.Contains("verify", r.Stdout);
            Assert.DoesNotContain("verify: bad", r.All);
        }
    }

    [Fact]
    public async Task Several_clients_at_once_on_tcp_and_unix_each_see_their_own_writes()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        await using var s = await TestServer.StartAsync(null, ("shared", 32L << 20), ("other", 8L << 20));
        var clients = Enumerable.Range(0, 6).Select(i =>
        {
            var uri = i % 2 == 0 ? s.UnixUri(i < 5 ? "shared" : "other") : s.TcpUri(i < 5 ? "shared" : "other");
            var offset = i * (1 << 20) + i;
            return Tools.RunOkAsync(qemuIo, ["-f", "raw", "-c", $"write -P {i + 1} {offset} 700000", "-c", $"read -P {i + 1} {offset} 700000", "-c", "flush", uri]);
        }).ToList();
        var results = await Task.WhenAll(clients);
        Assert.All(results, r => Assert.DoesNotContain("Pattern verification failed", r.All));
        var sw = Stopwatch.StartNew();
        while (s.Server.OpenExports > 0 && sw.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50);
        }
        Assert.Equal(0, s.Server.OpenExports);
    }
}

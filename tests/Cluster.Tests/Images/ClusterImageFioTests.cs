using System.Globalization;
using System.Text.RegularExpressions;
using Appliance.BlockDev.Tests;

namespace Appliance.Cluster.Tests.Images;

/// <summary>fio's nbd engine with verification against cluster images, an OSD SIGKILLed under it, and ext4 through nbdfuse.</summary>
public sealed partial class ClusterImageTests
{
    private static string Fio => Tools.Require("fio", "fio");

    private static IEnumerable<string> FioVerify(string uri, string rw, string bs, int depth, string size) =>
    [
        "--name=verify", "--ioengine=nbd", $"--uri={uri}", $"--rw={rw}", $"--bs={bs}", $"--iodepth={depth}",
        $"--size={size}", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--randrepeat=0",
    ];

    [Fact]
    public async Task FioNbdEngineWritesVerifyWithCrc32c()
    {
        await ApplianceOkAsync("image", "create", "data/fio", "--size", "64M", "--object-size", "1M");
        await using var server = await ServeAsync("fio.sock");
        foreach (var (rw, bs, depth) in new[] { ("randwrite", "4k", 16), ("write", "1m", 4), ("randwrite", "192k", 32) })
        {
            var r = await Tools.RunOkAsync(Fio, FioVerify(server.Uri("data/fio"), rw, bs, depth, "32M"), TimeSpan.FromMinutes(3));
            Assert.Contains("verify", r.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("verify: bad", r.All, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Ext4ThroughNbdfuseOnAClusterImage()
    {
        await ApplianceOkAsync("image", "create", "data/ext4", "--size", "96M");
        await using var server = await ServeAsync("ext4.sock");
        await Appliance.BlockDev.Tests.Clients.Ext4OverNbd.RunAsync(server.Uri("data/ext4"), 96L << 20, _dir.Path, log);
    }

    [Fact]
    public async Task AnOsdKilledDuringAFioVerifyRunCostsFioNoError()
    {
        await ApplianceOkAsync("image", "create", "data/fiokill", "--size", "160M");
        await using var server = await ServeAsync("fiokill.sock");
        var fio = Tools.RunAsync(Fio, FioVerify(server.Uri("data/fiokill"), "randwrite", "16k", 16, "128M"), TimeSpan.FromMinutes(4));
        // Once fio's writes are landing, kill an OSD.
        await Poll.UntilAsync(async () =>
        {
            var info = await ApplianceOkAsync("image", "info", "data/fiokill");
            return long.Parse(Regex.Match(info, @"allocated\s+(\d+)").Groups[1].Value, CultureInfo.InvariantCulture) > (8 << 20);
        }, TimeSpan.FromSeconds(60), "fio's first writes");
        Assert.False(fio.IsCompleted, "fio finished before the OSD was killed: the test would show nothing");
        var victim = Random.Shared.Next(3);
        log.WriteLine($"killing osd.{victim} (pid {await cluster.KillOsdAsync(victim)})");
        var r = await fio;
        try
        {
            Assert.True(r.ExitCode == 0 && !r.All.Contains("verify: bad", StringComparison.Ordinal) && !r.All.Contains("error", StringComparison.OrdinalIgnoreCase),
                $"fio exited {r.ExitCode}:\n{r.All}\nserver:\n{server.Output}");
        }
        finally
        {
            // The fixture's cluster is whole again for the next test.
            log.WriteLine(await cluster.UpAsync());
            await using var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(30));
            await using var mon = cluster.Monitors();
            await cluster.WaitCleanAsync(client, mon, "data", TimeSpan.FromSeconds(120), log.WriteLine);
        }
    }
}

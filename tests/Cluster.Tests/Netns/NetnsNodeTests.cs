using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Appliance.BlockDev.Tests;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// Issue 21's deployment on three machines, each a network namespace (<see cref="NetnsNodes"/>): `appliance
/// bootstrap` on n1, `join-token` there and `join` on n2 and n3 (each becomes a monitor: 3 in all), `disk add` of a
/// sparse file on each; then a pool, an object put on one node and read on another, an image served by `appliance nbd
/// serve` on n1's address and written and read by qemu-io, a filesystem mounted on n2 with a file written and read.
/// n3's network is cut (from everyone, connections reset): once the monitors mark its OSD down, everything written
/// before is read back and more is written and read through n1 and n2. Healed, n3's OSD comes back and every PG is
/// active+clean. The nodes are brought down as a user would (`fs umount`, the NBD server's SIGTERM, `node stop` on
/// each) and nothing is left: no process, mount, namespace or interface.
/// </summary>
[Collection(NetnsFixture.Collection)]
public sealed class NetnsNodeTests(ITestOutputHelper output)
{
    private const string Pool = "data";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private void Log(string line) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,6:0.0} s  {line}");

    [NetnsFact]
    public async Task Three_nodes_bootstrap_join_add_disks_serve_an_object_an_image_and_a_mount_survive_a_cut_node_and_leave_nothing()
    {
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        string runId, data;
        var nodes = await NetnsNodes.CreateAsync(3, Log);
        try
        {
            (runId, data) = (nodes.Network.RunId, nodes.Data);
            await ProvisionAsync(nodes);
            await ServeAndCutAsync(nodes, qemuIo);
            await BringDownAsync(nodes);
        }
        finally
        {
            await nodes.DisposeAsync();
        }

        // The harness found nothing to kill or detach (asserted in BringDownAsync); now the network is gone too.
        Assert.DoesNotContain(await Host.NamespacesAsync(), ns => ns.StartsWith(runId + "-", StringComparison.Ordinal));
        var links = await Host.LinksAsync();
        Assert.DoesNotContain(links, l => l.StartsWith(runId, StringComparison.Ordinal));
        Assert.DoesNotContain(File.ReadAllText("/proc/self/mountinfo"), data, StringComparison.Ordinal);
        Assert.False(Directory.Exists(data), $"{data} is still there");
    }

    /// <summary>bootstrap, join-token/join, disk add, the pool; returns once every PG is active+clean.</summary>
    private async Task ProvisionAsync(NetnsNodes nodes)
    {
        var (n1, n2, n3) = (nodes.Nodes[0], nodes.Nodes[1], nodes.Nodes[2]);
        var boot = await nodes.OkAsync(n1, "bootstrap", "--mon-ip", nodes.Address(n1).ToString(), "--name", n1);
        Assert.Contains($"monitor mon.{n1} at {nodes.Address(n1)}:{NetnsNodes.MonitorPort}", boot);
        Log($"{n1} bootstrapped");
        foreach (var n in new[] { n2, n3 })
        {
            var token = (await nodes.OkAsync(n1, "join-token", n)).Trim();
            Assert.StartsWith("aplj1.", token);
            var joined = await nodes.OkAsync(n, "join", token, "--mon-ip", nodes.Address(n).ToString());
            Assert.Contains($"node {n} joined cluster", joined);
            Assert.Contains($"mon.{n} is a voting member", joined);
            Log($"{n} joined");
        }
        var status = await nodes.OkAsync(n3, "status");
        Assert.Contains("3 monitors", status);

        // Each node adds its disk at the same time, as three machines would.
        var adds = await Task.WhenAll(nodes.Nodes.Select(n => nodes.OkAsync(n, "disk", "add", Path.Combine(nodes.Data, n, "disk.img"), "--size", "1G")));
        foreach (var (n, added) in nodes.Nodes.Zip(adds))
        {
            Assert.Contains($"host {n}", added);
            Assert.Matches(@"osd\.\d+ is up at " + Regex.Escape(nodes.Address(n).ToString()), added);
        }
        await nodes.OkAsync(n1, "pool", "create", Pool, "--size", "3", "--pg-num", "16");
        await using var client = await nodes.ConnectAsync(TimeSpan.FromSeconds(30));
        await using var mon = nodes.MonitorClient();
        await NetnsCluster.WaitCleanAsync(client, mon, [.. client.OsdMap!.Osds.Keys], Pool, Bound, () => nodes.Logs(), Log);
        var tree = await nodes.OkAsync(n2, "osd", "tree");
        foreach (var n in nodes.Nodes)
        {
            Assert.Contains(n, tree);
        }
        Log("provisioned: 3 monitors, 3 OSDs (one a node), pool data active+clean");
    }

    private async Task ServeAndCutAsync(NetnsNodes nodes, string qemuIo)
    {
        var (n1, n2, n3) = (nodes.Nodes[0], nodes.Nodes[1], nodes.Nodes[2]);
        var seed = TestSeed.Get(nameof(Three_nodes_bootstrap_join_add_disks_serve_an_object_an_image_and_a_mount_survive_a_cut_node_and_leave_nothing), output);
        var random = new Random(seed);

        // An object put on n2, read on n3.
        var obj1 = RandomFile(nodes, "obj1.in", 1 << 20, random);
        await nodes.OkAsync(n2, "object", "put", Pool, "obj1", obj1);
        await AssertObjectAsync(nodes, n3, "obj1", obj1);

        // An image, served on n1's address; qemu-io of the test process writes and reads it over TCP.
        await nodes.OkAsync(n1, "image", "create", $"{Pool}/disk0", "--size", "64M");
        var listen = new IPEndPoint(nodes.Address(n1), 10809);
        nodes.StartProcess(n1, "nbd", listen.ToString(), "nbd", "serve", "--listen", listen.ToString(), "--lease", "10");
        await Poll.UntilAsync(async () => await nodes.Network.ProbeAsync("host", listen) == "connected", Bound, $"the NBD server to listen on {listen}", () => nodes.Logs());
        var uri = $"nbd://{listen}/{Pool}/disk0";
        await QemuIoAsync(qemuIo, uri, "write -P 0x5a 0 1M", "write -P 0x3c 63M 1M", "read -P 0x5a 0 1M", "read -P 0x3c 63M 1M");

        // A filesystem mounted on n2 (in this machine's mount table: nsenter enters n2's network only).
        await nodes.OkAsync(n1, "fs", "create", "fs0", "--meta-pool", Pool, "--data-pool", Pool);
        var mnt = Path.Combine(nodes.DataDir(n2), "mnt", "fs0");
        Directory.CreateDirectory(mnt);
        await nodes.OkAsync(n2, "fs", "mount", "fs0", mnt, "--log", Path.Combine(nodes.LogDir(n2), "fs.fs0.log"));
        var file1 = RandomBytes(300_000, random);
        await File.WriteAllBytesAsync(Path.Combine(mnt, "before.bin"), file1);
        Assert.Equal(SHA256.HashData(file1), SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(mnt, "before.bin"))));
        Log("object, image and file written and read back");

        // n3's network cut from everyone; its OSD is marked down by the others.
        await using var client = await nodes.ConnectAsync(TimeSpan.FromSeconds(30));
        var n3Osd = client.OsdMap!.Osds.Values.Single(o => o.Host == n3).Id;
        await nodes.Network.IsolateAsync(n3);
        await Poll.UntilAsync(() => client.OsdMap?.FindOsd(n3Osd)?.Up == false, Bound, $"osd.{n3Osd} (on {n3}) to be marked down", () => nodes.Logs());
        Log($"{n3} cut off; osd.{n3Osd} marked down in epoch {client.OsdMap!.Epoch}");
        Assert.Equal("refused", await nodes.Network.ProbeAsync(n1, new IPEndPoint(nodes.Address(n3), NetnsNodes.MonitorPort)));

        // Everything written before reads back, and more is written and read, through n1 and n2.
        await AssertObjectAsync(nodes, n1, "obj1", obj1);
        var obj2 = RandomFile(nodes, "obj2.in", 512 << 10, random);
        await nodes.OkAsync(n1, "object", "put", Pool, "obj2", obj2);
        await AssertObjectAsync(nodes, n2, "obj2", obj2);
        await QemuIoAsync(qemuIo, uri, "read -P 0x5a 0 1M", "read -P 0x3c 63M 1M", "write -P 0x77 8M 2M", "read -P 0x77 8M 2M");
        Assert.Equal(SHA256.HashData(file1), SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(mnt, "before.bin"))));
        var file2 = RandomBytes(200_000, random);
        await File.WriteAllBytesAsync(Path.Combine(mnt, "during.bin"), file2);
        Assert.Equal(SHA256.HashData(file2), SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(mnt, "during.bin"))));
        Assert.Contains("during.bin", Directory.GetFiles(mnt).Select(Path.GetFileName));
        Log($"with {n3} cut: object, image and file read and written");

        // Healed: n3's OSD boots again and every PG is active+clean on 3 OSDs.
        await nodes.Network.HealAsync(n3);
        await using var mon = nodes.MonitorClient();
        await NetnsCluster.WaitCleanAsync(client, mon, [.. client.OsdMap!.Osds.Keys], Pool, Bound, () => nodes.Logs(), Log);
        await AssertObjectAsync(nodes, n3, "obj2", obj2);
        Log($"{n3} healed: osd.{n3Osd} up, every PG active+clean, obj2 read on {n3}");
    }

    /// <summary>As a user brings the nodes down: the mount unmounted, the NBD server stopped, `node stop` on each; then
    /// nothing of them runs or is mounted, before the harness's clean-up looks.</summary>
    private async Task BringDownAsync(NetnsNodes nodes)
    {
        var mnt = Path.Combine(nodes.DataDir(nodes.Nodes[1]), "mnt", "fs0");
        await nodes.OkAsync(nodes.Nodes[1], "fs", "umount", mnt);
        await nodes.StopProcessAsync("nbd", TimeSpan.FromSeconds(30));
        foreach (var n in nodes.Nodes.Reverse())
        {
            var stopped = await nodes.OkAsync(n, "node", "stop");
            Assert.Contains("osd.", stopped);
            Assert.Contains($"mon.{n}", stopped);
        }
        // The mount's process exits once the kernel has let the mount go; everything else was waited for by its stop.
        await Poll.UntilAsync(async () => (await nodes.LeftoversAsync()).Count == 0, TimeSpan.FromSeconds(30), "nothing of the nodes to be left",
            () => string.Join("\n", nodes.LeftoversAsync().GetAwaiter().GetResult()));
        Log("brought down: no process, no mount");
    }

    private static byte[] RandomBytes(int length, Random random)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static string RandomFile(NetnsNodes nodes, string name, int length, Random random)
    {
        var path = Path.Combine(nodes.Data, name);
        File.WriteAllBytes(path, RandomBytes(length, random));
        return path;
    }

    /// <summary>`object get` on <paramref name="node"/> returns the bytes of <paramref name="expected"/>.</summary>
    private static async Task AssertObjectAsync(NetnsNodes nodes, string node, string name, string expected)
    {
        var got = Path.Combine(nodes.Data, $"{name}.{node}.out");
        await nodes.OkAsync(node, "object", "get", Pool, name, got);
        Assert.True(SHA256.HashData(File.ReadAllBytes(expected)).AsSpan().SequenceEqual(SHA256.HashData(File.ReadAllBytes(got))),
            $"{name} read on {node} differs from what was put");
        File.Delete(got);
    }

    private static async Task QemuIoAsync(string qemuIo, string uri, params string[] commands)
    {
        var args = new List<string> { "-f", "raw" };
        foreach (var c in commands)
        {
            args.AddRange(["-c", c]);
        }
        args.Add(uri);
        var r = await Tools.RunOkAsync(qemuIo, args, TimeSpan.FromSeconds(90));
        Assert.DoesNotContain("Pattern verification failed", r.All);
        Assert.DoesNotContain("failed", r.All, StringComparison.OrdinalIgnoreCase);
    }
}

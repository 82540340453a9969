using System.Globalization;
using Appliance.Platform.Devices;
using Appliance.Store;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests.Disks;

/// <summary>
/// `appliance bootstrap` and `disk add|ls|rm` as a user runs them on one node (its conf and data directories in a
/// temporary directory, its monitor on a free loopback port): the monitor and the OSDs are real background
/// processes; the disks are files, and a loop device mounted for the mounted-disk case. Needs root (losetup,
/// mount).
/// </summary>
public sealed class DiskAddTests(ITestOutputHelper output) : IDisposable
{
    private const long DiskBytes = 64 << 20;
    private readonly TempDir _dir = new();
    private readonly List<Func<Task>> _cleanup = [];

    private string Disk(string name) => _dir.File(name + ".img");

    [Fact]
    public async Task Bootstrap_then_disk_add_refuses_what_holds_data_naming_it_and_adds_lists_and_removes_OSDs()
    {
        Assert.True(Environment.UserName == "root", "this test mounts a loop device: run it as root (scripts/test.sh does)");
        using var node = new TestNode(_dir, "n1", output);
        var port = TestNode.FreePort();
        var boot = await node.OkAsync("bootstrap", "--mon-ip", $"127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}", "--name", "n1");
        Assert.Contains($"monitor mon.n1 at 127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}", boot);
        Assert.Contains("mon.n1 started (pid", boot);
        Assert.Contains($"mon     1 monitors: n1@127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}", boot);
        Assert.Single(node.DaemonPids());
        Assert.Contains("already holds cluster", await node.RefusedAsync("bootstrap", "--mon-ip", "127.0.0.1:1", "--name", "n1"));

        // A filesystem: refused, naming it, where, and the flag.
        var ext4 = DiskTools.Sparse(Disk("ext4"), DiskBytes);
        await DiskTools.Ext4Async(ext4);
        var refusal = await node.RefusedAsync("disk", "add", ext4);
        Assert.Contains("an ext4 filesystem (magic 0xEF53 at byte 1080)", refusal);
        Assert.Contains("add --wipe", refusal);

        // A partition table.
        var gpt = DiskTools.Sparse(Disk("gpt"), DiskBytes);
        await DiskTools.PartedAsync(gpt, "mklabel", "gpt");
        refusal = await node.RefusedAsync("disk", "add", gpt);
        Assert.Contains("a GPT partition table", refusal);
        Assert.Contains("--wipe", refusal);

        // Another cluster's store.
        var foreign = DiskTools.Sparse(Disk("foreign"), DiskBytes);
        var theirs = Guid.NewGuid();
        await using (var device = FileDevice.Open(foreign))
        {
            await ObjectStore.MkfsAsync(device, new MkfsOptions { OsdId = 4, ClusterId = theirs });
        }
        refusal = await node.RefusedAsync("disk", "add", foreign);
        Assert.Contains($"the store of osd.4 of another cluster (fsid {theirs})", refusal);

        // A mounted device, and the file behind it: refused even with --wipe.
        var mounted = DiskTools.Sparse(Disk("mounted"), DiskBytes);
        await DiskTools.Ext4Async(mounted);
        var loop = (await DiskTools.RunAsync("losetup", "mount", "--find", "--show", mounted)).Trim();
        _cleanup.Add(() => DiskTools.RunAsync("losetup", "mount", "-d", loop));
        var mountPoint = Directory.CreateDirectory(_dir.File("mnt")).FullName;
        await DiskTools.RunAsync("mount", "mount", loop, mountPoint);
        _cleanup.Insert(0, () => DiskTools.RunAsync("umount", "mount", mountPoint));
        refusal = await node.RefusedAsync("disk", "add", loop, "--wipe");
        Assert.Contains($"mounted at {mountPoint}", refusal);
        Assert.Contains("--wipe does not apply", refusal);
        refusal = await node.RefusedAsync("disk", "add", mounted, "--wipe");
        Assert.Contains($"attached to {loop}", refusal);
        Assert.Contains($"mounted at {mountPoint}", refusal);
        Assert.Equal(DiskBytes, new FileInfo(mounted).Length);

        // --wipe where it is allowed: the filesystem's superblock is zeroed, the OSD made and started.
        var added = await node.OkAsync("disk", "add", ext4, "--wipe");
        Assert.Contains("wiped an ext4 filesystem", added);
        Assert.Contains("osd.0 is up at 127.0.0.1:", added);
        Assert.Equal(2, node.DaemonPids().Count());

        // Our own OSD: "already osd.0", and --wipe does not change that.
        refusal = await node.RefusedAsync("disk", "add", ext4);
        Assert.Contains("is already osd.0 of this cluster", refusal);
        refusal = await node.RefusedAsync("disk", "add", ext4, "--wipe");
        Assert.Contains("is already osd.0 of this cluster", refusal);
        Assert.Contains("disk rm 0", refusal);

        // Another cluster's store with --wipe, and a file made by disk add.
        Assert.Contains("osd.1 is up", await node.OkAsync("disk", "add", foreign, "--wipe"));
        var fresh = Disk("fresh");
        Assert.Contains("osd.2 is up", await node.OkAsync("disk", "add", fresh, "--size", "64M"));

        var ls = await node.OkAsync("disk", "ls");
        var lines = ls.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("DEVICE", lines[0]);
        Assert.Equal(4, lines.Length);
        Assert.Matches($@"{System.Text.RegularExpressions.Regex.Escape(ext4)} +osd\.0 +64 ?MiB.*running \(pid \d+\), up in", ls);
        Assert.Contains(fresh, ls);

        // disk rm by device: out, drained (no pool: nothing maps to it), stopped, key gone, disk free again.
        var rm = await node.OkAsync("disk", "rm", foreign);
        Assert.Contains("osd.1 marked out", rm);
        Assert.Contains("osd.1 (pid", rm);
        Assert.Contains("free", rm);
        Assert.Equal(3, node.DaemonPids().Count());
        Assert.DoesNotContain("osd.1", await node.OkAsync("disk", "ls"));
        Assert.DoesNotContain("osd.1", await node.OkAsync("auth", "ls"));
        // Gone from the osdmap and CRUSH (`osd rm`), not kept down and out: its id is the lowest free one again.
        Assert.Contains("removed from the osdmap and CRUSH", rm);
        var tree = await node.OkAsync("osd", "tree");
        Assert.DoesNotContain("osd.1 ", tree);
        Assert.Contains("osd.2", tree);
        Assert.Contains("osd.1 is up", await node.OkAsync("disk", "add", foreign));
    }

    public void Dispose()
    {
        foreach (var step in _cleanup)
        {
            try
            {
                step().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is Xunit.Sdk.XunitException or IOException)
            {
                output.WriteLine($"clean-up: {e.Message}");
            }
        }
        _dir.Dispose();
    }
}

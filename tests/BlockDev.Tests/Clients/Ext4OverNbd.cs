using System.Diagnostics;

namespace Appliance.BlockDev.Tests.Clients;

/// <summary>
/// An export as a filesystem through nbdfuse: mkfs.ext4 on the FUSE file, loop-mounted, files written, mounted again
/// read-only and read back, then e2fsck. Shared by the local server's tests and the cluster images' (linked into
/// tests/Cluster.Tests). Needs root and a free loop device.
/// </summary>
public static class Ext4OverNbd
{
    public static async Task RunAsync(string uri, long size, string dir, ITestOutputHelper output)
    {
        var nbdfuse = Tools.Require("nbdfuse", "nbdfuse");
        var mkfs = Tools.Require("mkfs.ext4", "e2fsprogs");
        var e2fsck = Tools.Require("e2fsck", "e2fsprogs");
        var losetup = Tools.Require("losetup", "mount");
        var mount = Tools.Require("mount", "mount");
        var umount = Tools.Require("umount", "mount");
        var fusermount = Tools.Require("fusermount3", "fuse3");
        var fuseDir = Path.Combine(dir, "fuse");
        var mnt = Path.Combine(dir, "mnt");
        Directory.CreateDirectory(fuseDir);
        Directory.CreateDirectory(mnt);
        var psi = new ProcessStartInfo(nbdfuse) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(fuseDir);
        psi.ArgumentList.Add(uri);
        using var fuse = Process.Start(psi)!;
        var file = Path.Combine(fuseDir, "nbd");
        string? loop = null;
        try
        {
            var sw = Stopwatch.StartNew();
            while (!File.Exists(file) && sw.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(100);
            }
            Assert.True(File.Exists(file), "nbdfuse did not expose the export");
            Assert.Equal(size, new FileInfo(file).Length);
            await Tools.RunOkAsync(mkfs, ["-q", "-F", file]);
            // Loop devices exist on this machine (losetup -f finds one); the kernel mounts the filesystem on it.
            loop = (await Tools.RunOkAsync(losetup, ["-f", "--show", file])).Stdout.Trim();
            await Tools.RunOkAsync(mount, [loop, mnt]);
            var payload = new byte[3 << 20];
            new Random(7).NextBytes(payload);
            for (var i = 0; i < 5; i++)
            {
                await File.WriteAllBytesAsync(Path.Combine(mnt, $"file{i}"), payload);
            }
            Directory.CreateDirectory(Path.Combine(mnt, "dir"));
            await File.WriteAllTextAsync(Path.Combine(mnt, "dir", "hello.txt"), "hello over nbd\n");
            await Tools.RunOkAsync(umount, [mnt]);
            await Tools.RunOkAsync(losetup, ["-d", loop]);
            loop = null;
            // Fresh mount: what was written is there.
            loop = (await Tools.RunOkAsync(losetup, ["-f", "--show", file])).Stdout.Trim();
            await Tools.RunOkAsync(mount, ["-o", "ro", loop, mnt]);
            Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(mnt, "file3")));
            Assert.Equal("hello over nbd\n", await File.ReadAllTextAsync(Path.Combine(mnt, "dir", "hello.txt")));
            await Tools.RunOkAsync(umount, [mnt]);
            await Tools.RunOkAsync(losetup, ["-d", loop]);
            loop = null;
            var fsck = await Tools.RunOkAsync(e2fsck, ["-f", "-n", file]);
            output.WriteLine(fsck.All);
        }
        finally
        {
            if (loop is not null)
            {
                await Tools.RunAsync(umount, [mnt]);
                await Tools.RunAsync(losetup, ["-d", loop]);
            }
            await Tools.RunAsync(fusermount, ["-u", fuseDir]);
            if (!fuse.WaitForExit(10_000))
            {
                fuse.Kill();
            }
        }
    }
}

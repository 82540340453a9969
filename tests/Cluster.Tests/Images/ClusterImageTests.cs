using System.Globalization;
using System.Text.RegularExpressions;
using Appliance.BlockDev.Tests;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests.Images;

/// <summary>
/// Issue 19's cluster images with real processes: `cluster up` (3 monitors, 3 OSDs, pool data size 3), images made
/// with `appliance image`, served by `appliance nbd serve` processes on unix sockets, and the real clients (qemu-img,
/// qemu-io, nbdinfo) or the raw NBD client of tests/BlockDev.Tests.
/// </summary>
public sealed partial class ClusterImageTests(ImageCluster cluster, ITestOutputHelper log) : IClassFixture<ImageCluster>, IDisposable
{
    private readonly TempDir _dir = new();

    private static bool Soak => Environment.GetEnvironmentVariable("APPLIANCE_SOAK") == "1";

    public void Dispose() => _dir.Dispose();

    private string PathOf(string name) => Path.Combine(_dir.Path, name);

    private async Task<string> ApplianceOkAsync(params string[] args)
    {
        var (code, output) = await LocalCluster.ApplianceAsync([.. args, "--conf-dir", cluster.ConfDir]);
        Assert.True(code == 0, $"appliance {string.Join(' ', args)} exited {code}:\n{output}");
        return output;
    }

    private Task<NbdServerProcess> ServeAsync(string socketName, int leaseSeconds = 20) =>
        NbdServerProcess.StartAsync(cluster, PathOf(socketName), leaseSeconds);

    private static string QemuImg => Tools.Require("qemu-img", "qemu-utils");
    private static string QemuIo => Tools.Require("qemu-io", "qemu-utils");
    private static string NbdInfo => Tools.Require("nbdinfo", "libnbd-bin");

    private static Task<Tools.Result> QemuIoAsync(string uri, params string[] commands) =>
        Tools.RunOkAsync(QemuIo, ["-f", "raw", uri, .. commands.SelectMany(c => new[] { "-c", c })]);

    /// <summary>nbdinfo --map: (offset, length, hole) per extent.</summary>
    private static async Task<List<(long Offset, long Length, bool Hole)>> MapAsync(string uri)
    {
        var r = await Tools.RunOkAsync(NbdInfo, ["--map", uri]);
        var extents = new List<(long, long, bool)>();
        foreach (var line in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            extents.Add((long.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture), (int.Parse(f[2], CultureInfo.InvariantCulture) & 1) != 0));
        }
        return extents;
    }

    private static bool IsHole(List<(long Offset, long Length, bool Hole)> map, long offset, long length) =>
        map.Where(e => e.Offset < offset + length && e.Offset + e.Length > offset).All(e => e.Hole);

    private static bool IsData(List<(long Offset, long Length, bool Hole)> map, long offset, long length) =>
        map.Where(e => e.Offset < offset + length && e.Offset + e.Length > offset).All(e => !e.Hole);

    private static void WriteRandom(string path, long size, Random random, params (long Offset, int Length)[] chunks)
    {
        using var f = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
        RandomAccess.SetLength(f, size);
        foreach (var (offset, length) in chunks)
        {
            var data = new byte[length];
            random.NextBytes(data);
            RandomAccess.Write(f, data, offset);
        }
    }

    [Fact]
    public async Task ClusterUpServesImageDisk0OnItsSocketAndLoopbackPort()
    {
        var socket = Path.Combine(cluster.Data, "run", "nbd.sock");
        var info = await Tools.RunOkAsync(NbdInfo, [$"nbd+unix:///data/disk0?socket={socket}"]);
        Assert.Contains("export-size: 4294967296", info.Stdout, StringComparison.Ordinal);
        var listen = (await File.ReadAllTextAsync(Path.Combine(cluster.ConfDir, "nbd.listen"))).Trim();
        var r = await QemuIoAsync($"nbd://{listen}/data/disk0", "write -P 0x5a 4095M 1M", "read -P 0x5a 4095M 1M");
        Assert.DoesNotContain("Pattern verification failed", r.All, StringComparison.Ordinal);
        Assert.Contains("served by", await ApplianceOkAsync("image", "info", "data/disk0"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task QemuImgConvertInAndOutKeepsTheDataAndTheHoles()
    {
        await ApplianceOkAsync("image", "create", "data/convert", "--size", "48M", "--object-size", "1M");
        await using var server = await ServeAsync("convert.sock");
        var random = new Random(TestSeed.Get(nameof(QemuImgConvertInAndOutKeepsTheDataAndTheHoles), log));
        var source = PathOf("source.raw");
        // Data across object boundaries (1 MiB objects) and holes between.
        WriteRandom(source, 48 << 20, random, (0, 5 << 20), ((20 << 20) + (123 * 512), 3 << 20), ((48 << 20) - 4096, 4096));
        var uri = server.Uri("data/convert");
        await Tools.RunOkAsync(QemuImg, ["convert", "-n", "-f", "raw", "-O", "raw", source, uri]);
        var back = PathOf("back.raw");
        await Tools.RunOkAsync(QemuImg, ["convert", "-f", "raw", "-O", "raw", uri, back]);
        Assert.Equal(Tools.Sha256(source), Tools.Sha256(back));
        var map = await MapAsync(uri);
        Assert.True(IsData(map, 0, 5 << 20) && IsHole(map, 30 << 20, 16 << 20) && IsHole(map, 6 << 20, 14 << 20),
            "the map after convert:\n" + string.Join("\n", map));
    }

    [Fact]
    public async Task QemuIoPatternsAcrossObjectBoundariesAndAtTheEnd()
    {
        const long size = (8 << 20) + 1536; // not a whole number of objects
        await ApplianceOkAsync("image", "create", "data/patterns", "--size", size.ToString(CultureInfo.InvariantCulture), "--object-size", "1M");
        await using var server = await ServeAsync("patterns.sock");
        var uri = server.Uri("data/patterns");
        string At(long v) => v.ToString(CultureInfo.InvariantCulture);
        await QemuIoAsync(uri,
            $"write -P 0x11 {At((1 << 20) - 3072)} 6144",            // across the first boundary
            $"write -P 0x22 {At((3 << 20) - 512)} {At((2 << 20) + 1024)}", // two boundaries, one whole object between
            $"write -P 0x33 {At(size - 1536)} 1536",                  // the end, in the last, partial object
            "write -P 0x44 0 512");
        // Another connection (another qemu-io) reads back what the first wrote, and zeros between.
        var r = await QemuIoAsync(uri,
            $"read -P 0x11 {At((1 << 20) - 3072)} 6144",
            $"read -P 0x22 {At((3 << 20) - 512)} {At((2 << 20) + 1024)}",
            $"read -P 0x33 {At(size - 1536)} 1536",
            "read -P 0x44 0 512",
            "read -P 0 512 512",
            $"read -P 0 {At((1 << 20) + 3072)} {At(1 << 20)}",
            $"read -P 0 {At((5 << 20) + 512)} {At(size - 1536 - (5 << 20) - 512)}");
        Assert.DoesNotContain("Pattern verification failed", r.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BlockStatusFollowsThinWritesTrimAndWriteZeroes()
    {
        await ApplianceOkAsync("image", "create", "data/map", "--size", "16M", "--object-size", "1M");
        await using var server = await ServeAsync("map.sock");
        var uri = server.Uri("data/map");
        var fresh = await MapAsync(uri);
        Assert.True(IsHole(fresh, 0, 16 << 20), "a new image is one hole:\n" + string.Join("\n", fresh));
        await QemuIoAsync(uri, $"write -P 0x61 {(1 << 20) + 8192} 4096", $"write -P 0x62 {4 << 20} {2 << 20}");
        var written = await MapAsync(uri);
        Assert.True(IsData(written, (1 << 20) + 8192, 4096) && IsData(written, 4 << 20, 2 << 20)
            && IsHole(written, 0, (1 << 20) + 8192) && IsHole(written, (1 << 20) + 12288, (3 << 20) - 12288) && IsHole(written, 6 << 20, 10 << 20),
            "after two writes:\n" + string.Join("\n", written));
        // TRIM a whole object (removed), WRITE_ZEROES that may unmap inside another (its blocks become holes).
        await QemuIoAsync(uri, $"discard {4 << 20} {1 << 20}", $"write -z -u {(5 << 20) + 4096} 8192");
        var after = await MapAsync(uri);
        Assert.True(IsHole(after, 4 << 20, 1 << 20) && IsHole(after, (5 << 20) + 4096, 8192)
            && IsData(after, 5 << 20, 4096) && IsData(after, (5 << 20) + 12288, (1 << 20) - 12288),
            "after TRIM and WRITE_ZEROES:\n" + string.Join("\n", after));
        await QemuIoAsync(uri, $"read -P 0 {4 << 20} {1 << 20}", $"read -P 0 {(5 << 20) + 4096} 8192",
            $"read -P 0x62 {5 << 20} 4096", $"read -P 0x62 {(5 << 20) + 12288} {(1 << 20) - 12288}", $"read -P 0x61 {(1 << 20) + 8192} 4096");
    }

    [Fact]
    public async Task ImportAndExportOfASparseFileKeepTheChecksumAndTheHoles()
    {
        var size = Soak ? 1L << 30 : 64L << 20;
        var random = new Random(TestSeed.Get(nameof(ImportAndExportOfASparseFileKeepTheChecksumAndTheHoles), log));
        var source = PathOf("sparse.raw");
        WriteRandom(source, size, random, (0, 1 << 20), ((size / 2) + 12345, 100 << 10), (size - 4096, 4096));
        var imported = await ApplianceOkAsync("image", "import", source, "data/sparse");
        log.WriteLine(imported);
        var info = await ApplianceOkAsync("image", "info", "data/sparse");
        var allocated = long.Parse(Regex.Match(info, @"allocated\s+(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(allocated < size / 4, $"the import allocated {allocated} of {size} bytes: holes were written\n{info}");
        var back = PathOf("exported.raw");
        log.WriteLine(await ApplianceOkAsync("image", "export", "data/sparse", back));
        Assert.Equal(size, new FileInfo(back).Length);
        Assert.Equal(Tools.Sha256(source), Tools.Sha256(back));
        var blocks = (long)Posix.statx(back).stx_blocks * 512;
        Assert.True(blocks < size / 4, $"the export allocated {blocks} of {size} bytes: holes were not kept");
    }
}

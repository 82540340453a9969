using System.Diagnostics;

namespace Appliance.Cli.Tests.Disks;

/// <summary>The real tools the disk tests make disks with (mkfs.ext4, parted, mkswap, losetup, mount), run by path;
/// a missing one fails the test with its Debian package.</summary>
internal static class DiskTools
{
    public static async Task<string> RunAsync(string tool, string package, params string[] args)
    {
        var path = new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);
        Assert.True(path is not null, $"{tool} is not installed: install the Debian package {package} (scripts/test-packages.txt)");
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(bound.Token);
        Assert.True(p.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited {p.ExitCode}: {await stderr}");
        return await stdout;
    }

    /// <summary>A sparse file of <paramref name="bytes"/>.</summary>
    public static string Sparse(string path, long bytes)
    {
        using (var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            f.SetLength(bytes);
        }
        return path;
    }

    public static Task Ext4Async(string path) => RunAsync("mkfs.ext4", "e2fsprogs", "-F", "-q", path);

    public static Task PartedAsync(string path, params string[] script) => RunAsync("parted", "parted", ["-s", path, .. script]);
}

using Appliance.Cli.Common;
using Appliance.Tests.Support;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests;

/// <summary>A cluster without pools for the fs command tests: `fs create` makes the pools it needs.</summary>
public sealed class FsClusterFixture : IAsyncLifetime
{
    internal LoopbackCluster Cluster { get; } = new();

    public Task InitializeAsync() => Cluster.StartWithPoolsAsync([]);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>`appliance fs create|ls|mount|umount|rm` run in-process against a real cluster, as a user would.</summary>
public sealed class FsCommandTests(FsClusterFixture fixture, ITestOutputHelper output) : IClassFixture<FsClusterFixture>
{
    private async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await CliApp.RunAsync([.. args, "--conf-dir", fixture.Cluster.ConfDir], o, e);
        output.WriteLine($"appliance {string.Join(' ', args)} -> {code}: {o.ToString().Trim()} {e.ToString().Trim()}");
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Create_list_mount_use_and_remove_a_filesystem()
    {
        Assert.Equal(ExitCodes.Ok, (await RunAsync("fs", "create", "cfs1")).Code);
        Assert.Equal(ExitCodes.Refused, (await RunAsync("fs", "create", "cfs1")).Code);
        Assert.Equal(ExitCodes.InvalidInput, (await RunAsync("fs", "create", "bad.name")).Code);
        Assert.Contains("cfs1 meta=cfs1.meta data=cfs1.data", (await RunAsync("fs", "ls")).Out);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync("fs", "mount", "nosuch", "/tmp", "--foreground")).Code);

        using var dir = new TempDir();
        var mnt = Path.Combine(dir.Path, "mnt");
        Directory.CreateDirectory(mnt);
        var serving = Task.Run(() => RunAsync("fs", "mount", "cfs1", mnt, "--foreground"));
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == mnt))
        {
            if (serving.IsCompleted)
            {
                Assert.Fail($"the mount ended: {(await serving).Err}");
            }
            Assert.True(DateTime.UtcNow < deadline, "not mounted within 60 s");
            await Task.Delay(50);
        }
        try
        {
            await File.WriteAllTextAsync(Path.Combine(mnt, "hello"), "world");
            Assert.Equal("world", await File.ReadAllTextAsync(Path.Combine(mnt, "hello")));
            Assert.Equal(ExitCodes.Refused, (await RunAsync("fs", "rm", "cfs1", "--yes-i-really-mean-it")).Code);
        }
        finally
        {
            Assert.Equal(ExitCodes.Ok, (await RunAsync("fs", "umount", mnt)).Code);
        }
        Assert.Equal(ExitCodes.Ok, (await serving.WaitAsync(TimeSpan.FromSeconds(60))).Code);
        var refused = await RunAsync("fs", "rm", "cfs1");
        Assert.Equal(ExitCodes.Refused, refused.Code);
        Assert.Contains("--yes-i-really-mean-it", refused.Err);
        Assert.Equal(ExitCodes.Ok, (await RunAsync("fs", "rm", "cfs1", "--yes-i-really-mean-it")).Code);
        Assert.DoesNotContain("cfs1", (await RunAsync("fs", "ls")).Out);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync("fs", "rm", "cfs1")).Code);
        // Every object of the filesystem went with it; the pools stay.
        var left = await RunAsync("object", "ls", "cfs1.data");
        Assert.Equal(ExitCodes.Ok, left.Code);
        Assert.Equal("", left.Out.Trim());
        var meta = await RunAsync("object", "ls", "cfs1.meta");
        Assert.Equal("appliance.filesystems", meta.Out.Trim());
    }
}

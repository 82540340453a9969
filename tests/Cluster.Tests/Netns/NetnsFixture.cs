using System.Collections.Concurrent;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// A test that needs network namespaces. xunit 2.9 has no skip decided inside a test, so the decision is made here,
/// when tests are discovered: with APPLIANCE_NO_NETNS=1 (a machine that cannot make namespaces: not root, no
/// iproute2/nftables, a container without CAP_NET_ADMIN) the test is reported as skipped with that reason; without it
/// the test runs, and a machine that cannot make namespaces fails it with a message saying what is missing.
/// </summary>
public sealed class NetnsFactAttribute : FactAttribute
{
    public NetnsFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(NetnsCluster.NoNetnsVariable) == "1")
        {
            Skip = $"{NetnsCluster.NoNetnsVariable}=1: this machine cannot make network namespaces";
        }
    }
}

/// <summary>
/// One <see cref="NetnsCluster"/> shared by the tests of a class (3 OSDs, pool `data` of 16 PGs; disks of 512 MiB,
/// 2 GiB under APPLIANCE_SOAK=1). Its log lines are kept for each test to print.
/// </summary>
public sealed class NetnsFixture : IAsyncLifetime
{
    /// <summary>The netns test classes share one xunit collection: they run one after another, so that one class's
    /// stale-run sweep never meets another's half-made test namespaces.</summary>
    public const string Collection = "netns";

    private readonly ConcurrentQueue<string> _lines = new();
    private NetnsCluster? _cluster;

    public NetnsCluster Cluster => _cluster ?? throw new InvalidOperationException("the netns cluster did not start");

    public static long DiskBytes => TestSeed.Soak ? 2L << 30 : 512L << 20;

    public async Task InitializeAsync()
    {
        if (Environment.GetEnvironmentVariable(NetnsCluster.NoNetnsVariable) == "1")
        {
            return; // every test is skipped (NetnsFact)
        }
        _cluster = await NetnsCluster.StartAsync(osds: 3, DiskBytes, pgNum: 16, Log);
    }

    public void Log(string line)
    {
        _lines.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {line}");
        Console.WriteLine($"[netns] {line}");
    }

    /// <summary>The log lines since the last call.</summary>
    public IEnumerable<string> Drain()
    {
        while (_lines.TryDequeue(out var line))
        {
            yield return line;
        }
    }

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}

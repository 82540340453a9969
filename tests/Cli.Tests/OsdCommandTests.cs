using Appliance.Cli.Common;
using Appliance.Tests.Support;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests;

/// <summary>A cluster of three monitors and three OSD daemons in this process with one pool, for the OSD and PG
/// commands.</summary>
public sealed class OsdCommandFixture : IAsyncLifetime
{
    internal LoopbackCluster Cluster { get; } = new();

    public Task InitializeAsync() => Cluster.StartWithPoolsAsync(["pgq"], pgNum: 8);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>`appliance pg query`, `osd set|unset noout`, `osd out --dry-run` and `osd rm`'s refusal, run in-process
/// against a real cluster.</summary>
public sealed class OsdCommandTests(OsdCommandFixture fixture, ITestOutputHelper output) : IClassFixture<OsdCommandFixture>
{
    private readonly LoopbackCluster _cluster = fixture.Cluster;

    private async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await CliApp.RunAsync([.. args, "--conf-dir", _cluster.ConfDir], o, e);
        output.WriteLine($"appliance {string.Join(' ', args)} -> {code}: {o}{e}");
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Pg_query_shows_a_pgs_history_and_osd_commands_say_what_they_move()
    {
        await _cluster.WaitCleanAsync();
        var pool = (await RunAsync("pool", "ls")).Out;
        Assert.Contains("pgq", pool, StringComparison.Ordinal);
        // The primaries report every 2 s: wait (bounded) for a report of PG 0 of the pool.
        var pgId = "";
        await using (var mon = _cluster.MonClient())
        {
            await foreach (var map in mon.WatchOsdMapAsync(null))
            {
                pgId = $"{map.FindPool("pgq")!.Id}.0";
                break;
            }
        }
        var deadline = DateTime.UtcNow.AddSeconds(30);
        (int Code, string Out, string Err) query;
        while (true)
        {
            query = await RunAsync("pg", "query", pgId);
            if (query.Code == ExitCodes.Ok && query.Out.Contains("active+clean", StringComparison.Ordinal))
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, $"pg query {pgId}: {query.Code} {query.Out}{query.Err}");
            await Task.Delay(200);
        }
        Assert.Contains($"pg {pgId}: active+clean", query.Out, StringComparison.Ordinal);
        Assert.Contains("info: last_update", query.Out, StringComparison.Ordinal);
        Assert.Contains("past intervals (known from epoch", query.Out, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.NotFound, (await RunAsync("pg", "query", "999.0")).Code);
        Assert.Equal(ExitCodes.InvalidInput, (await RunAsync("pg", "query", "nonsense")).Code);

        var dry = await RunAsync("osd", "out", "0", "--dry-run");
        Assert.Equal(ExitCodes.Ok, dry.Code);
        Assert.Matches(@"^osd out 0 moves \d+ of 8 PGs", dry.Out);
        // Only printed: osd.0 is still in.
        Assert.DoesNotContain("out: osd.0", (await RunAsync("status")).Out, StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Ok, (await RunAsync("osd", "set", "noout")).Code);
        var status = (await RunAsync("status")).Out;
        Assert.Contains("noout flag set", status, StringComparison.Ordinal);
        Assert.Contains("flags noout", status, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Ok, (await RunAsync("osd", "unset", "noout")).Code);
        Assert.DoesNotContain("noout", (await RunAsync("status")).Out, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.InvalidInput, (await RunAsync("osd", "set", "nosuchflag")).Code);

        var rm = await RunAsync("osd", "rm", "0");
        Assert.Equal(ExitCodes.Refused, rm.Code);
        Assert.Contains("osd.0 is up", rm.Err, StringComparison.Ordinal);
    }
}

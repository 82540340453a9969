using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Appliance.Bench.Common;
using Appliance.Monitor.Daemon;
using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;

namespace Appliance.Bench.Monitor;

/// <summary>
/// Three monitors over loopback (in this process, each with its own store directory and its own messenger
/// endpoints): commits per second and commit latency with 1 and 64 concurrent proposers (each a client of its
/// own, committing `config set`), and the time from stopping the leader to the next commit (median of rounds).
/// There is no reference daemon on this machine to run beside ours; the issue's aims are printed instead.
/// </summary>
public sealed class MonitorBenchmark : IBenchmark
{
    public string Name => "mon";

    public string Description => "monitors: commits/s and p50/p99 latency with 1 and 64 proposers, leader failover time [--seconds 5] [--rounds 3] [--failovers 10]";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 5);
        var failovers = a.Get("--failovers", 10);
        var rounds = Math.Max(1, a.Get("--rounds", 3));
        var dir = Directory.CreateTempSubdirectory("appliance-mon-bench-");
        try
        {
            var mons = Enumerable.Range(0, 3).Select(i => ($"{(char)('a' + i)}", $"127.0.0.1:{FreePort()}")).ToList();
            var confDir = Path.Combine(dir.FullName, "conf");
            var conf = ClusterConf.Bootstrap(confDir, mons, DateTimeOffset.UtcNow);
            var monKey = Keyring.Load(Path.Combine(confDir, ClusterConf.MonKeyringName)).Find(ClusterConf.MonEntity)!.Key;
            var admin = Keyring.Load(Path.Combine(confDir, ClusterConf.AdminKeyringName)).Find("client.admin")!;
            var daemons = new MonitorDaemon?[3];
            var log = new List<string>();
            async Task StartAsync(int i)
            {
                var d = new MonitorDaemon(new MonitorDaemonOptions
                {
                    Name = conf.Monitors[i].Name,
                    DataDirectory = Path.Combine(dir.FullName, "mon-" + conf.Monitors[i].Name),
                    Conf = conf,
                    MonKey = monKey,
                    Admin = admin,
                }, line => { lock (log) { log.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"); } });
                await d.StartAsync();
                daemons[i] = d;
            }
            for (var i = 0; i < 3; i++)
            {
                await StartAsync(i);
            }
            var endpoints = conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList();
            MonClient NewClient() => new(endpoints, "client.admin", admin.Key);

            Console.WriteLine($"mon: 3 monitors over loopback, stores in {Path.GetTempPath()}, {seconds} s per run, {rounds} rounds (1 and 64 proposers interleaved)");
            Console.WriteLine($"{"proposers",9} {"round",6} {"commits/s",10} {"p50 ms",8} {"p99 ms",8}");
            var results = new Dictionary<int, List<(double Rate, double P50, double P99)>> { [1] = [], [64] = [] };
            for (var round = 1; round <= rounds; round++)
            {
                foreach (var proposers in new[] { 1, 64 })
                {
                    var r = await ProposeAsync(proposers);
                    results[proposers].Add(r);
                    Console.WriteLine($"{proposers,9} {"#" + round,6} {Fio.Format(r.Rate),10} {F(r.P50),8} {F(r.P99),8}");
                }
            }
            foreach (var (proposers, list) in results)
            {
                var rate = list.Select(x => x.Rate).Order().ElementAt(list.Count / 2);
                var p50 = list.Select(x => x.P50).Order().ElementAt(list.Count / 2);
                var p99 = list.Select(x => x.P99).Order().ElementAt(list.Count / 2);
                var aim = proposers == 1 ? "aim: p50 < 2 ms" : "aim: > 10,000 commits/s";
                Console.WriteLine($"{proposers,9} {"median",6} {Fio.Format(rate),10} {F(p50),8} {F(p99),8}   {aim}");
            }

            async Task<(double Rate, double P50, double P99)> ProposeAsync(int proposers)
            {
                var clients = Enumerable.Range(0, proposers).Select(_ => NewClient()).ToList();
                // Warm up: connections made, the leader found.
                await Task.WhenAll(clients.Select(c => c.CommandAsync(new ConfigSet("osd_heartbeat_grace", "20"), ct)));
                var latencies = new List<double>[proposers];
                var until = Stopwatch.StartNew();
                await Task.WhenAll(clients.Select((c, i) => Task.Run(async () =>
                {
                    latencies[i] = [];
                    var n = 0;
                    while (until.Elapsed.TotalSeconds < seconds)
                    {
                        var t = Stopwatch.GetTimestamp();
                        var r = await c.CommandAsync(new ConfigSet("osd_heartbeat_grace", (10 + n++ % 50).ToString(CultureInfo.InvariantCulture)), ct);
                        if (r.Status != MonReplyStatus.Ok)
                        {
                            throw new InvalidOperationException($"commit failed: {r.Status} {r.Message}");
                        }
                        latencies[i].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                    }
                }, ct)));
                var elapsed = until.Elapsed.TotalSeconds;
                foreach (var c in clients)
                {
                    await c.DisposeAsync();
                }
                var all = latencies.SelectMany(x => x).Order().ToArray();
                return (all.Length / elapsed, all[all.Length / 2], all[(int)(all.Length * 0.99)]);
            }

            // Failover: stop the leader, time until a client's next commit succeeds; bring it back; repeat. First as a
            // crash (no hand-off), then as an orderly stop (the leader hands off).
            async Task<List<double>> FailoversAsync(bool handOff)
            {
                var times = new List<double>();
                await using (var client = NewClient())
                {
                    for (var round = 0; round < failovers; round++)
                    {
                        await client.CommandAsync(new ConfigSet("osd_heartbeat_grace", "20"), ct);
                        var leader = Array.FindIndex(daemons, d => d is not null && d.StatusLine.StartsWith("leader", StringComparison.Ordinal));
                        if (leader < 0)
                        {
                            continue;
                        }
                        var t = Stopwatch.GetTimestamp();
                        var victim = daemons[leader]!;
                        daemons[leader] = null;
                        await victim.StopAsync(handOff);
                        MonReply r;
                        try
                        {
                            r = await client.CommandAsync(new ConfigSet("osd_heartbeat_grace", (21 + round).ToString(CultureInfo.InvariantCulture)), ct);
                        }
                        catch (MonitorsUnavailableException)
                        {
                            foreach (var d in daemons)
                            {
                                Console.WriteLine(d?.PaxosState);
                            }
                            lock (log)
                            {
                                File.WriteAllLines("/tmp/mon-bench.log", log);
                            }
                            throw;
                        }
                        times.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
                        if (r.Status != MonReplyStatus.Ok)
                        {
                            throw new InvalidOperationException($"commit after failover failed: {r.Status} {r.Message}");
                        }
                        await StartAsync(leader);
                        await Task.Delay(1500, ct); // the restarted monitor rejoins and catches up
                    }
                }
                return times;
            }
            var times = await FailoversAsync(handOff: false);
            var orderly = await FailoversAsync(handOff: true);
            orderly.Sort();
            times.Sort();
            // --failovers 0 (or no leader found) measures none: say so rather than index an empty list.
            Console.WriteLine(times.Count == 0 ? "failover: not measured"
                : $"failover: median {F(times[times.Count / 2])} s over {times.Count} leader crashes (min {F(times[0])}, max {F(times[^1])})   aim < 3 s");
            Console.WriteLine(orderly.Count == 0 ? "orderly stop of the leader (hand-off): not measured"
                : $"orderly stop of the leader (hand-off): median {F(orderly[orderly.Count / 2])} s over {orderly.Count} (min {F(orderly[0])}, max {F(orderly[^1])})");
            for (var i = 0; i < 3; i++)
            {
                if (daemons[i] is { } d)
                {
                    await d.DisposeAsync();
                }
            }
            return 0;
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }
}

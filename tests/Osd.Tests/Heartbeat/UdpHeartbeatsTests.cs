using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Appliance.Osd.Heartbeat;
using Microsoft.Extensions.Logging.Abstractions;

namespace Appliance.Osd.Tests.Heartbeat;

/// <summary>The real heartbeat path: UDP sockets on loopback, the dedicated threads, MACed datagrams.</summary>
public sealed class UdpHeartbeatsTests
{
    private sealed record Node(UdpHeartbeats Net, Heartbeater Hb, RecordedReports Reports, IPEndPoint Address);

    private static Node Start(int id, byte[] secret)
    {
        var socket = UdpHeartbeats.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var net = new UdpHeartbeats(socket, () => 1u, k => k == 1 ? secret : null, _ => { }, NullLogger.Instance);
        var reports = new RecordedReports();
        // Reports are recorded from the heartbeat thread: the list is read under its own lock below.
        var hb = new Heartbeater(id, net, new LockedReports(reports), TimeProvider.System, () => TimeSpan.Zero, NullLogger.Instance)
        {
            Interval = TimeSpan.FromMilliseconds(100),
            Grace = TimeSpan.FromSeconds(3),
        };
        net.Heartbeater = hb;
        return new Node(net, hb, reports, (IPEndPoint)net.LocalEndPoint);
    }

    private sealed class LockedReports(RecordedReports inner) : IHeartbeatReports
    {
        public void Failed(int osd, TimeSpan silent)
        {
            lock (inner)
            {
                inner.Failed(osd, silent);
            }
        }

        public void Recovered(int osd)
        {
            lock (inner)
            {
                inner.Recovered(osd);
            }
        }
    }

    private static List<(int Osd, bool Failed)> Events(Node n)
    {
        lock (n.Reports)
        {
            return [.. n.Reports.Events];
        }
    }

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"waited 20 s for {what}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Osds_answer_each_other_over_udp_ignore_other_keys_and_report_a_peer_that_goes_away()
    {
        var secret = RandomNumberGenerator.GetBytes(32);
        var a = Start(0, secret);
        var b = Start(1, secret);
        var stranger = Start(2, RandomNumberGenerator.GetBytes(32));
        try
        {
            var addresses = new Dictionary<int, IPEndPoint> { [0] = a.Address, [1] = b.Address, [2] = stranger.Address };
            foreach (var n in new[] { a, b, stranger })
            {
                n.Net.SetAddresses(addresses);
            }
            a.Hb.SetPeers([1]);
            b.Hb.SetPeers([0]);
            // A node holding another key pings osd.0: its datagrams are dropped, never answered.
            stranger.Hb.SetPeers([0]);
            foreach (var n in new[] { a, b, stranger })
            {
                n.Net.Start();
            }

            await UntilAsync(() => a.Hb.PingsAnswered >= 20 && b.Hb.PingsAnswered >= 20 && a.Net.Dropped >= 10, "pings answered both ways and the stranger's dropped");
            Assert.Empty(Events(a));
            Assert.Empty(Events(b));
            // The stranger heard nothing back: it reports osd.0 (its report would not be believed by anyone else).
            await UntilAsync(() => Events(stranger).Contains((0, true)), "the stranger to find osd.0 silent");

            // osd.1 goes away: osd.0 reports it once the grace has passed.
            b.Net.Dispose();
            await UntilAsync(() => Events(a).Contains((1, true)), "osd.0 to report osd.1");
            Assert.DoesNotContain(Events(a), e => e.Osd != 1);
        }
        finally
        {
            a.Net.Dispose();
            b.Net.Dispose();
            stranger.Net.Dispose();
        }
    }
}

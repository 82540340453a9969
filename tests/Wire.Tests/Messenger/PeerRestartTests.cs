using System.Collections.Concurrent;
using System.Net;
using System.Threading.Channels;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Wire.Tests.Messenger;

/// <summary>A server that restarts loses its sessions; its clients must notice and start over instead of resending
/// into a gap forever.</summary>
public sealed class PeerRestartTests
{
    [Fact]
    public async Task A_restarted_server_gets_the_unacknowledged_messages_and_everything_after_them()
    {
        var key = Secret.Generate();
        var log = new ConcurrentQueue<string>();
        var received = Channel.CreateUnbounded<int>();
        MessengerServer NewServer() => new(e => e == "client.test" ? key : null, new MessengerOptions(),
            async (_, m) => await received.Writer.WriteAsync(BitConverter.ToInt32(m.Payload.Span)), log.Enqueue);

        var server = NewServer();
        var ep = (IPEndPoint)server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = new MessengerClient(ep, "client.test", key, ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, log.Enqueue);
        await client.StartAsync();
        for (var i = 0; i < 100; i++)
        {
            await client.Session.SendAsync(300, BitConverter.GetBytes(i));
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(i, await received.Reader.ReadAsync(cts.Token));
        }
        while (client.Session.UnackedMessages > 0)
        {
            await Task.Delay(10, cts.Token);
        }

        // The server goes away and a new one (knowing nothing) takes its port; meanwhile more is sent.
        await server.DisposeAsync();
        for (var i = 100; i < 150; i++)
        {
            await client.Session.SendAsync(300, BitConverter.GetBytes(i));
        }
        await using var restarted = NewServer();
        restarted.ListenTcp(ep);
        for (var i = 100; i < 150; i++)
        {
            Assert.Equal(i, await received.Reader.ReadAsync(cts.Token));
        }
        for (var i = 150; i < 160; i++)
        {
            await client.Session.SendAsync(300, BitConverter.GetBytes(i));
            Assert.Equal(i, await received.Reader.ReadAsync(cts.Token));
        }
        Assert.Contains(log, l => l.Contains("session reset", StringComparison.Ordinal));
        Assert.DoesNotContain(log, l => l.Contains("out-of-order", StringComparison.Ordinal) || l.Contains("BUG", StringComparison.Ordinal));
    }
}

using System.Buffers.Binary;
using Appliance.Wire.Messenger;

namespace Appliance.Wire.Tests.Messenger;

/// <summary>The opt-in fault hook (<see cref="TransportFaults"/>): connections are cut at random frames, the peer sees
/// the drop, and sessions recover through their normal reconnect, so every message still arrives exactly once and in
/// order.</summary>
public sealed class TransportFaultsTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(ConnectionMode.Crc)]
    [InlineData(ConnectionMode.Secure)]
    public async Task Random_cuts_at_both_ends_lose_and_duplicate_nothing(ConnectionMode mode)
    {
        var seed = Seeds.Get();
        var clientFaults = new TransportFaults(seed) { CutBeforeSend = 0.002, CutAfterSend = 0.002, CutOnReceive = 0.005 };
        var serverFaults = new TransportFaults(seed + 1) { CutBeforeSend = 0.005, CutAfterSend = 0.005, CutOnReceive = 0.002 };
        await using var f = new MessengerFixture(new MessengerOptions { Faults = serverFaults, AckInterval = TimeSpan.FromMilliseconds(5) });
        // The server answers each request with its payload: requests and replies both cross the cuts.
        f.ServerReply = async (session, m) => await session.SendAsync(MessengerFixture.Data + 1, m.Payload.ToArray(), replyTo: m.Seq);
        var client = f.Client(mode, options: new MessengerOptions { Faults = clientFaults, AckInterval = TimeSpan.FromMilliseconds(5) });
        await client.StartAsync().WaitAsync(Patience);

        var total = Seeds.Soak ? 20_000 : 3_000;
        var replies = new List<Task<Message>>();
        for (var i = 0; i < total; i++)
        {
            var payload = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(payload, i);
            replies.Add(client.Session.RequestAsync(MessengerFixture.Data, payload, Patience));
            if (i % 64 == 63)
            {
                // In waves, so the stream runs for many frames (and cuts) rather than one burst.
                await Task.WhenAll(replies.TakeLast(64));
            }
        }
        var got = await Task.WhenAll(replies).WaitAsync(Patience);
        for (var i = 0; i < total; i++)
        {
            Assert.Equal(i, BinaryPrimitives.ReadInt64LittleEndian(got[i].Payload.Span));
        }
        Assert.True(clientFaults.Cuts + serverFaults.Cuts > 0, "no cut was injected: the test tested nothing");
        Assert.True(client.Connects > 1, $"the client connected only {client.Connects} time(s) across {clientFaults.Cuts + serverFaults.Cuts} cuts");
        // The peer saw the cut as a real drop (its read failed or found the stream closed), not as a message.
        Assert.Contains(f.Log, l => l.Contains("fault injected", StringComparison.Ordinal));
        Assert.Contains(f.Log, l => l.Contains("receive failed", StringComparison.Ordinal) || l.Contains("closed the connection", StringComparison.Ordinal));
        // Exactly once: the server handled each request once (one session, every seq delivered once).
        var session = Assert.Single(f.Server.Sessions);
        Assert.Equal((ulong)total, session.LastDelivered);
    }

    [Fact]
    public async Task Disabled_faults_cut_nothing()
    {
        var faults = new TransportFaults(1) { CutBeforeSend = 1, CutAfterSend = 1, CutOnReceive = 1, Enabled = false };
        await using var f = new MessengerFixture(new MessengerOptions { Faults = faults });
        var client = f.Client(options: new MessengerOptions { Faults = faults });
        await client.StartAsync().WaitAsync(Patience);
        for (var i = 0; i < 100; i++)
        {
            await client.Session.SendAsync(MessengerFixture.Data, new byte[] { (byte)i });
        }
        for (var i = 0; i < 100; i++)
        {
            var (_, m) = await f.Received.Reader.ReadAsync().AsTask().WaitAsync(Patience);
            Assert.Equal((byte)i, m.Payload.Span[0]);
        }
        Assert.Equal(0, faults.Cuts);
        Assert.Equal(1, client.Connects);
        Assert.Null(new MessengerOptions().Faults);
    }
}

using System.Net;
using System.Threading.Channels;
using Appliance.Osd.Protocol;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Client.Tests;

/// <summary>A request as a fake OSD received it, with the session it came on (to send notifies back).</summary>
internal sealed record Received(OsdOpRequest Request, MessageSession Session, ulong Seq);

/// <summary>
/// A tiny OSD on loopback: a real <see cref="MessengerServer"/> that takes tickets for service "osd", records every
/// request, and answers with whatever <see cref="Answer"/> says (null: never answers). By default it serves the
/// requests from <see cref="Objects"/>.
/// </summary>
internal sealed class FakeOsd : IAsyncDisposable
{
    private readonly MessengerServer _server;

    public FakeOsd(int id, ServiceSecrets secrets)
    {
        Id = id;
        _server = new MessengerServer(_ => null, new MessengerOptions(), OnMessageAsync, _ => { }, new TicketVerifier(secrets, TimeSpan.FromMinutes(5)));
        var ep = (IPEndPoint)_server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        Address = $"{ep.Address}:{ep.Port}";
        Answer = r => Objects.Apply(r, Epoch);
    }

    public int Id { get; }
    public string Address { get; }
    /// <summary>The map epoch this OSD answers with.</summary>
    public uint Epoch { get; set; } = 1;
    public FakeObjects Objects { get; set; } = new();
    public Func<OsdOpRequest, OsdOpReply?> Answer { get; set; }
    public Channel<Received> Requests { get; } = Channel.CreateUnbounded<Received>();
    public Channel<WatchNotifyAck> Acks { get; } = Channel.CreateUnbounded<WatchNotifyAck>();

    private async ValueTask OnMessageAsync(MessageSession session, Message message)
    {
        switch (message.Type)
        {
            case OsdMessageType.OpRequest:
                var request = OsdOpRequest.FromBytes(message.Payload.Span);
                await Requests.Writer.WriteAsync(new Received(request, session, message.Seq));
                if (Answer(request) is { } reply)
                {
                    await session.SendAsync(OsdMessageType.OpReply, reply.ToBytes(), message.Seq);
                }
                break;
            case OsdMessageType.WatchNotifyAck:
                await Acks.Writer.WriteAsync(WatchNotifyAck.FromBytes(message.Payload.Span));
                break;
        }
    }

    /// <summary>The next request this OSD receives (within 10 s, so a test that waits for one that never comes fails).</summary>
    public async Task<Received> NextAsync() => await Requests.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

    public static OsdOpReply Reply(OsdOpRequest request, int result, uint epoch, params OsdOpOutput[] outputs) =>
        new(request.Tid, result, epoch, new Eversion(epoch, request.Tid), 1, outputs);

    /// <summary>Cuts every connection (sessions stay; clients reconnect and resume).</summary>
    public void DropConnections() => _server.DropConnections();

    private int _disposed;

    /// <summary>Stops listening and closes every session (again: nothing).</summary>
    public ValueTask DisposeAsync() => Interlocked.Exchange(ref _disposed, 1) == 0 ? _server.DisposeAsync() : ValueTask.CompletedTask;
}

using System.Collections.Concurrent;
using System.Net;
using System.Threading.Channels;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Wire.Tests.Messenger;

/// <summary>A server with a keyring and a log, and helpers to make clients of it.</summary>
internal sealed class MessengerFixture : IAsyncDisposable
{
    public const ushort Data = 300;
    public readonly Secret ClientKey = Secret.Generate();
    public readonly ConcurrentQueue<string> Log = new();
    /// <summary>What the server received; bounded when asked (a full channel holds the server's handler, and through
    /// it the session's inbox and the sender's window: messages stay in flight).</summary>
    public readonly Channel<(MessageSession Session, Message Message)> Received;
    public readonly MessengerServer Server;
    public readonly EndPoint Endpoint;
    private readonly List<MessengerClient> _clients = [];

    /// <param name="options">The server's options.</param>
    /// <param name="unix">Listen on a unix socket instead of loopback TCP.</param>
    /// <param name="receivedCapacity">Bound the channel of received messages.</param>
    /// <param name="tickets">Also take tickets sealed under these service secrets (a service such as an OSD).</param>
    public MessengerFixture(MessengerOptions? options = null, bool unix = false, int? receivedCapacity = null, ServiceSecrets? tickets = null)
    {
        Received = receivedCapacity is { } capacity
            ? Channel.CreateBounded<(MessageSession, Message)>(capacity)
            : Channel.CreateUnbounded<(MessageSession, Message)>();
        var keyring = new Keyring();
        keyring.Add(new KeyringEntry("client.test", ClientKey, new Dictionary<string, string> { ["osd"] = "allow rw" }));
        Server = new MessengerServer(e => keyring.Find(e)?.Key, options ?? new MessengerOptions(), OnMessage, Log.Enqueue,
            tickets is null ? null : new TicketVerifier(tickets, TimeSpan.FromMinutes(5)));
        if (unix)
        {
            UnixPath = Path.Combine(Path.GetTempPath(), $"appliance-wire-{Guid.NewGuid():N}.sock");
            Endpoint = Server.ListenUnix(UnixPath);
        }
        else
        {
            Endpoint = Server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        }
    }

    public string? UnixPath { get; }

    public Func<MessageSession, Message, ValueTask>? ServerReply { get; set; }

    private async ValueTask OnMessage(MessageSession session, Message message)
    {
        if (ServerReply is not null)
        {
            await ServerReply(session, message);
        }
        else
        {
            await Received.Writer.WriteAsync((session, message with { Payload = message.Payload.ToArray() })); // the payload outlives the handler: copy it
        }
    }

    public MessengerClient Client(ConnectionMode mode = ConnectionMode.Crc, Secret? key = null, string entity = "client.test",
        Func<MessageSession, Message, ValueTask>? handler = null, EndPoint? endpoint = null, MessengerOptions? options = null)
    {
        var client = new MessengerClient(endpoint ?? Endpoint, entity, key ?? ClientKey, mode, options ?? new MessengerOptions(),
            handler ?? ((_, _) => ValueTask.CompletedTask), Log.Enqueue);
        _clients.Add(client);
        return client;
    }

    /// <summary>A client that proves itself with the tickets <paramref name="ticket"/> hands out.</summary>
    public MessengerClient TicketClient(string entity, Func<IssuedTicket> ticket, ConnectionMode mode = ConnectionMode.Crc)
    {
        var client = new MessengerClient(Endpoint, entity, _ => ValueTask.FromResult(ticket()), mode, new MessengerOptions(),
            (_, _) => ValueTask.CompletedTask, Log.Enqueue);
        _clients.Add(client);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _clients)
        {
            await c.DisposeAsync();
        }
        await Server.DisposeAsync();
        if (UnixPath is not null)
        {
            File.Delete(UnixPath);
        }
    }
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Messenger;

/// <summary>Settings shared by messenger clients and servers.</summary>
public sealed record MessengerOptions
{
    public SessionOptions Session { get; init; } = new();
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>How often an idle receiver acknowledges what it delivered.</summary>
    public TimeSpan AckInterval { get; init; } = TimeSpan.FromMilliseconds(20);
    /// <summary>The mode a server requires: a Secure server refuses crc clients.</summary>
    public ConnectionMode MinimumMode { get; init; } = ConnectionMode.Crc;
    /// <summary>Cuts injected into every connection made with these options (tests only); null: none.</summary>
    public TransportFaults? Faults { get; init; }
}

/// <summary>
/// Accepts connections (TCP or unix socket), authenticates each with the mutual handshake — against a keyring (the
/// monitors hold every entity's key), or, on a server given a <see cref="TicketVerifier"/> (a service such as an
/// OSD), against a ticket the monitors sealed under the service's rotating secret — and attaches it to the client's
/// session (new or resumed). A bad peer — garbage, a bad frame, a wrong key, an expired, replayed or foreign ticket —
/// costs only its own connection: it is closed with a logged reason and every other connection keeps being served.
/// </summary>
public sealed class MessengerServer : IAsyncDisposable
{
    private readonly Func<string, Secret?> _lookup;
    private readonly TicketVerifier? _tickets;
    private readonly MessengerOptions _options;
    private readonly Func<MessageSession, Message, ValueTask> _handler;
    private readonly Action<string> _log;
    private readonly ConcurrentDictionary<(string, Guid), MessageSession> _sessions = new();
    private readonly ConcurrentDictionary<Connection, byte> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _loops = [];
    private readonly Guid _incarnation = Guid.NewGuid();

    /// <param name="lookup">An entity's key, for clients that prove themselves with it (null: unknown entity).</param>
    /// <param name="options">Limits and modes.</param>
    /// <param name="handler">Receives every application message, one at a time per session, in order.</param>
    /// <param name="log">One line per event worth keeping.</param>
    /// <param name="tickets">Verifies the service tickets clients present instead of a key; without it a ticket is
    /// refused.</param>
    public MessengerServer(Func<string, Secret?> lookup, MessengerOptions options, Func<MessageSession, Message, ValueTask> handler, Action<string> log,
        TicketVerifier? tickets = null)
    {
        _lookup = lookup;
        _tickets = tickets;
        _options = options;
        _handler = handler;
        _log = log;
    }

    public int ConnectionCount => _connections.Count;

    public IReadOnlyCollection<MessageSession> Sessions => [.. _sessions.Values];

    /// <summary>Listens on a TCP endpoint (port 0 picks one) and returns the bound endpoint.</summary>
    public EndPoint ListenTcp(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        Appliance.Platform.Native.Listeners.AllowRebind(socket);
        socket.Bind(endpoint);
        return Start(socket);
    }

    /// <summary>Listens on a unix socket path.</summary>
    public EndPoint ListenUnix(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return Start(socket);
    }

    private EndPoint Start(Socket socket)
    {
        socket.Listen(128);
        _listeners.Add(socket);
        _loops.Add(AcceptLoopAsync(socket));
        return socket.LocalEndPoint!;
    }

    /// <summary>Drops every connection (sessions stay, so clients resume): a network cut, for tests and failover.</summary>
    public void DropConnections()
    {
        foreach (var c in _connections.Keys)
        {
            c.Close("dropped by the server");
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            if (socket.ProtocolType == ProtocolType.Tcp)
            {
                socket.NoDelay = true;
            }
            var peer = socket.RemoteEndPoint?.ToString() ?? "unix-peer";
            _ = ServeAsync(new NetworkStream(socket, ownsSocket: true), peer);
        }
    }

    private async Task ServeAsync(Stream stream, string peer)
    {
        var connection = new Connection(stream, peer, Connection.HandshakeMaxPayload, _log) { Faults = _options.Faults };
        _connections[connection] = 0;
        MessageSession? session = null;
        try
        {
            session = await HandshakeAsync(connection);
            session.AcknowledgeWithin(_options.AckInterval);
            while (true)
            {
                var frame = await connection.ReadFrameAsync(_stop.Token);
                await session.ReceiveAsync(connection, frame);
            }
        }
        catch (ConnectionClosedException)
        {
            // Already logged with its reason by the connection.
        }
        catch (OperationCanceledException)
        {
            connection.Close("server stopping");
        }
        catch (Exception e) when (e is WireFormatException or AuthenticationException)
        {
            await RejectAsync(connection, e.Message);
        }
        catch (Exception e)
        {
            // A bug in our code or the handler: say so loudly, end this connection, keep serving the others.
            _log($"BUG while serving {peer}: {e}");
            connection.Close($"internal error: {e.GetType().Name}");
        }
        finally
        {
            session?.Detach(connection);
            _connections.TryRemove(connection, out _);
            await connection.DisposeAsync();
        }
    }

    private async Task<MessageSession> HandshakeAsync(Connection connection)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(_options.HandshakeTimeout);
        var ct = timeout.Token;
        var first = await connection.ReadFrameAsync(ct);
        Expect(connection, first, FrameTypes.Hello);
        var hello = HelloFrame.Decode(first.Payload.Span);
        if (hello.Mode < _options.MinimumMode)
        {
            throw new AuthenticationException($"this server requires {_options.MinimumMode} mode");
        }
        var server = new HandshakeServer(_lookup);
        EntityCaps? ticketCaps = null;
        if (hello.Ticket.Length > 0)
        {
            // The ticket's session key stands in for the entity's key: the proofs both ways are made with it, so the
            // client shows it holds the key the ticket carries, and we show we could open the ticket.
            var identity = (_tickets ?? throw new AuthenticationException("this server does not take tickets; authenticate with a key"))
                .Verify(hello.Ticket, hello.Authenticator, DateTimeOffset.UtcNow);
            var sessionKey = new Secret(identity.SessionKey);
            server = new HandshakeServer(e => e == identity.Entity ? sessionKey
                : throw new AuthenticationException($"the ticket belongs to {identity.Entity}, not {e}"));
            ticketCaps = identity.Caps;
        }
        var challenge = server.Challenge(hello.HandshakeHello);
        await connection.SendAsync(Control(FrameTypes.Challenge, challenge.Length), challenge, ct);
        var proofFrame = await connection.ReadFrameAsync(ct);
        Expect(connection, proofFrame, FrameTypes.Proof);
        var (serverProof, auth) = server.Verify(proofFrame.Payload.Span);

        // A session id belongs to the entity that created it: another entity naming it gets a session of its own.
        var session = _sessions.GetOrAdd((auth.Entity, hello.SessionId),
            key => new MessageSession(key.Item2, key.Item1, _options.Session, _handler, _log));
        session.SealedFrames = hello.Mode == ConnectionMode.Secure;
        session.PeerCaps = ticketCaps;
        var accept = new AcceptFrame(serverProof, session.LastDelivered, _incarnation).Encode();
        await connection.SendAsync(Control(FrameTypes.Accept, accept.Length), accept, ct);
        if (hello.Mode == ConnectionMode.Secure)
        {
            connection.SecureSend(SecureFrameCodec.Derive(auth.SessionKey, auth.HandshakeSalt, "server-to-client"));
            connection.SecureReceive(SecureFrameCodec.Derive(auth.SessionKey, auth.HandshakeSalt, "client-to-server"));
        }
        // Authenticated: from here on the peer may send frames as large as the session allows.
        connection.MaxPayload = _options.Session.MaxPayload + 64;
        _log($"{auth.Entity} connected from {connection.Peer} ({hello.Mode} mode, {(ticketCaps is null ? "key" : "ticket")}, session {session.Id})");
        await session.AttachAsync(connection, hello.LastReceived);
        return session;
    }

    internal static FrameHeader Control(ushort type, int length) => new(type, 0, 0, 0, 0, length);

    internal static void Expect(Connection connection, Frame frame, ushort type)
    {
        if (frame.Header.Type == FrameTypes.Reject)
        {
            throw connection.Close($"peer refused: {System.Text.Encoding.UTF8.GetString(frame.Payload.Span)}");
        }
        if (frame.Header.Type != type)
        {
            throw connection.Close($"expected handshake frame {type}, got {frame.Header.Type}");
        }
    }

    private static async Task RejectAsync(Connection connection, string reason)
    {
        try
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(reason);
            await connection.SendAsync(Control(FrameTypes.Reject, bytes.Length), bytes);
        }
        catch (ConnectionClosedException)
        {
            // The peer is gone already; the reason is logged below either way.
        }
        connection.Close(reason);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var l in _listeners)
        {
            l.Dispose();
        }
        DropConnections();
        await Task.WhenAll(_loops);
        foreach (var s in _sessions.Values)
        {
            await s.DisposeAsync();
        }
        _stop.Dispose();
    }
}

using System.Net;
using System.Net.Sockets;
using Appliance.Wire.Auth;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Messenger;

/// <summary>
/// The connecting side of a session: connects, authenticates (mutually: with its own key to the monitors, or with a
/// service ticket from the monitors to a service), resumes its session, and when the connection drops, reconnects
/// with backoff and resumes again, so messages queued in <see cref="Session"/> are delivered exactly once and in
/// order across any number of cuts. A refused authentication is final.
/// </summary>
public sealed class MessengerClient : IAsyncDisposable
{
    private readonly EndPoint _endpoint;
    private readonly string _entity;
    private readonly Secret? _secret;
    private readonly Func<CancellationToken, ValueTask<IssuedTicket>>? _ticket;
    private readonly ConnectionMode _mode;
    private readonly MessengerOptions _options;
    private readonly Action<string> _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _firstConnect = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private Connection? _current;
    private Guid? _serverIncarnation;

    /// <summary>A client that proves itself with its own key (to the monitors).</summary>
    public MessengerClient(EndPoint endpoint, string entity, Secret secret, ConnectionMode mode, MessengerOptions options,
        Func<MessageSession, Message, ValueTask> handler, Action<string> log)
        : this(endpoint, entity, secret, null, mode, options, handler, log)
    {
    }

    /// <summary>A client that proves itself with a service ticket (to a service such as an OSD).
    /// <paramref name="ticket"/> is asked before every connection attempt: it hands out a ticket that is still valid
    /// (fetching a new one from the monitors as the old one nears its expiry).</summary>
    public MessengerClient(EndPoint endpoint, string entity, Func<CancellationToken, ValueTask<IssuedTicket>> ticket, ConnectionMode mode,
        MessengerOptions options, Func<MessageSession, Message, ValueTask> handler, Action<string> log)
        : this(endpoint, entity, null, ticket, mode, options, handler, log)
    {
    }

    private MessengerClient(EndPoint endpoint, string entity, Secret? secret, Func<CancellationToken, ValueTask<IssuedTicket>>? ticket,
        ConnectionMode mode, MessengerOptions options, Func<MessageSession, Message, ValueTask> handler, Action<string> log)
    {
        _endpoint = endpoint;
        _entity = entity;
        _secret = secret;
        _ticket = ticket;
        _mode = mode;
        _options = options;
        _log = log;
        Session = new MessageSession(Guid.NewGuid(), "server", options.Session, handler, log) { SealedFrames = mode == ConnectionMode.Secure };
    }

    public MessageSession Session { get; }

    /// <summary>How many times a connection was established (1 + reconnects).</summary>
    public int Connects { get; private set; }

    /// <summary>Connection attempts that failed since the last one that succeeded (0 while connected, or while the
    /// first reconnect after a drop is still being tried): a caller waiting on a reply can tell a peer that is gone
    /// from one that is slow.</summary>
    public int FailedConnectsInARow => Volatile.Read(ref _failedConnects);

    private int _failedConnects;

    private TaskCompletionSource _connectFailed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes at the next failed connection attempt (then <see cref="FailedConnectsInARow"/> is above 0):
    /// a caller waiting on a reply learns that the peer is gone without polling.</summary>
    public Task NextConnectFailure => Volatile.Read(ref _connectFailed).Task;

    /// <summary>Starts connecting; completes when the first connection is authenticated (or fails for good).</summary>
    public Task StartAsync()
    {
        _loop ??= RunAsync();
        return _firstConnect.Task;
    }

    /// <summary>Cuts the current connection, as a network failure would; the client reconnects and resumes.</summary>
    public void DropConnection() => _current?.Close("dropped by the client");

    private async Task RunAsync()
    {
        var backoff = TimeSpan.FromMilliseconds(5);
        while (!_stop.IsCancellationRequested)
        {
            Connection? connection = null;
            try
            {
                var socket = new Socket(_endpoint.AddressFamily, SocketType.Stream,
                    _endpoint.AddressFamily == AddressFamily.Unix ? ProtocolType.Unspecified : ProtocolType.Tcp);
                try
                {
                    await socket.ConnectAsync(_endpoint, _stop.Token);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
                if (socket.ProtocolType == ProtocolType.Tcp)
                {
                    socket.NoDelay = true;
                }
                connection = new Connection(new NetworkStream(socket, ownsSocket: true), _endpoint.ToString() ?? "server", Connection.HandshakeMaxPayload, _log)
                {
                    Faults = _options.Faults,
                };
                await HandshakeAsync(connection);
                _current = connection;
                Connects++;
                Volatile.Write(ref _failedConnects, 0);
                _firstConnect.TrySetResult();
                backoff = TimeSpan.FromMilliseconds(5);
                Session.AcknowledgeWithin(_options.AckInterval);
                while (true)
                {
                    var frame = await connection.ReadFrameAsync(_stop.Token);
                    await Session.ReceiveAsync(connection, frame);
                }
            }
            catch (AuthenticationException e)
            {
                _log($"authentication as {_entity} refused: {e.Message}");
                _firstConnect.TrySetException(e);
                return;
            }
            catch (Exception e) when (e is ConnectionClosedException or SocketException or IOException or Codec.WireFormatException)
            {
                // Reconnect below; the reason was logged by the connection (or is the connect error).
                if (e is SocketException or NoTicketException)
                {
                    _log(e is SocketException ? $"connect to {_endpoint} failed: {e.Message}" : e.Message);
                    Interlocked.Increment(ref _failedConnects);
                    Interlocked.Exchange(ref _connectFailed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (OperationCanceledException)
            {
                // A handshake that timed out (or a connect aborted under us) is a failed attempt, not the end:
                // only DisposeAsync stops the client.
                _log($"connection attempt to {_endpoint} timed out or was aborted; retrying");
            }
            finally
            {
                if (connection is not null)
                {
                    Session.Detach(connection);
                    await connection.DisposeAsync();
                }
            }
            try
            {
                await Task.Delay(backoff, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
        }
    }

    private async Task HandshakeAsync(Connection connection)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(_options.HandshakeTimeout);
        var ct = timeout.Token;
        HandshakeClient client;
        HelloFrame helloFrame;
        if (_ticket is not null)
        {
            // The ticket's session key stands in for our key in the proofs; the authenticator is fresh per attempt.
            IssuedTicket ticket;
            try
            {
                ticket = await _ticket(ct);
            }
            catch (Exception e) when (e is not (AuthenticationException or OperationCanceledException))
            {
                // The monitors could not be asked just now: a failed attempt, tried again after the backoff. (A
                // refusal, AuthenticationException, is final like any refused authentication.)
                throw new NoTicketException($"no ticket for {_entity}: {e.Message}", e);
            }
            client = new HandshakeClient(_entity, new Secret(ticket.SessionKey));
            helloFrame = new HelloFrame(client.Hello(), Session.Id, Session.LastDelivered, _mode)
            {
                Ticket = ticket.Ticket,
                Authenticator = Tickets.Authenticator(ticket.SessionKey, DateTimeOffset.UtcNow),
            };
        }
        else
        {
            client = new HandshakeClient(_entity, _secret!);
            helloFrame = new HelloFrame(client.Hello(), Session.Id, Session.LastDelivered, _mode);
        }
        var hello = helloFrame.Encode();
        await connection.SendAsync(MessengerServer.Control(FrameTypes.Hello, hello.Length), hello, ct);
        var challenge = await ReadHandshakeFrameAsync(connection, FrameTypes.Challenge, ct);
        var proof = client.Answer(challenge.Payload.Span);
        await connection.SendAsync(MessengerServer.Control(FrameTypes.Proof, proof.Length), proof, ct);
        var acceptFrame = await ReadHandshakeFrameAsync(connection, FrameTypes.Accept, ct);
        var accept = AcceptFrame.Decode(acceptFrame.Payload.Span);
        var auth = client.Complete(accept.ServerProof);
        if (_serverIncarnation is { } known && known != accept.Incarnation)
        {
            // The server restarted and lost our session: what it had acknowledged is gone with it, and it counts
            // from 1 again. Start the session over: unacknowledged messages are renumbered and sent again (a
            // message the old server received but had not acknowledged may so arrive twice: at least once across a
            // peer restart, exactly once otherwise).
            var resent = Session.ResetForRestartedPeer();
            _log($"{_endpoint} restarted (a new server incarnation): session reset, {resent} unacknowledged message(s) sent again");
        }
        _serverIncarnation = accept.Incarnation;
        if (_mode == ConnectionMode.Secure)
        {
            connection.SecureSend(SecureFrameCodec.Derive(auth.SessionKey, auth.HandshakeSalt, "client-to-server"));
            connection.SecureReceive(SecureFrameCodec.Derive(auth.SessionKey, auth.HandshakeSalt, "server-to-client"));
        }
        // The server proved itself: from here on it may send frames as large as the session allows.
        connection.MaxPayload = _options.Session.MaxPayload + 64;
        await Session.AttachAsync(connection, accept.LastReceived);
    }

    private static async Task<Frame> ReadHandshakeFrameAsync(Connection connection, ushort type, CancellationToken ct)
    {
        var frame = await connection.ReadFrameAsync(ct);
        if (frame.Header.Type == FrameTypes.Reject)
        {
            // The server's refusal of our credentials is final: reconnecting with the same key cannot help.
            throw new AuthenticationException(System.Text.Encoding.UTF8.GetString(frame.Payload.Span));
        }
        MessengerServer.Expect(connection, frame, type);
        return frame;
    }

    /// <summary>No ticket could be had for this attempt (the source threw something other than a refusal).</summary>
    private sealed class NoTicketException(string message, Exception inner) : IOException(message, inner);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _current?.Close("client stopping");
        if (_loop is not null)
        {
            await _loop;
        }
        await Session.DisposeAsync();
        _stop.Dispose();
    }
}

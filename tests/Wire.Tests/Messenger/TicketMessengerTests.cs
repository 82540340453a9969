using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Wire.Tests.Messenger;

/// <summary>Connections to a service (an OSD's messenger) made with a ticket from the monitors instead of a key: the
/// server holds no client keys, only the service's rotating secrets.</summary>
public sealed class TicketMessengerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private static readonly EntityCaps VmCaps = new(new Dictionary<string, string> { ["osd"] = "allow rw pool=vm" });

    /// <summary>An "osd" service: the fixture's server, verifying tickets sealed under the service's secrets (it also
    /// knows the fixture's one client key, which no test here uses).</summary>
    private sealed class Service : IAsyncDisposable
    {
        public readonly ServiceSecrets Secrets = new("osd");
        public readonly MessengerFixture Fixture;

        public Service(bool takesTickets = true)
        {
            Secrets.Rotate(DateTimeOffset.UtcNow, TimeSpan.FromHours(2));
            Fixture = new MessengerFixture(tickets: takesTickets ? Secrets : null);
        }

        public ConcurrentQueue<string> Log => Fixture.Log;

        public EndPoint Endpoint => Fixture.Endpoint;

        public IssuedTicket Issue(string entity, TimeSpan ttl, DateTimeOffset? now = null) =>
            Tickets.Issue(Secrets, entity, VmCaps, now ?? DateTimeOffset.UtcNow, ttl);

        public MessengerClient Client(string entity, Func<IssuedTicket> ticket, ConnectionMode mode = ConnectionMode.Crc) =>
            Fixture.TicketClient(entity, ticket, mode);

        public ValueTask DisposeAsync() => Fixture.DisposeAsync();
    }

    [Theory]
    [InlineData(ConnectionMode.Crc)]
    [InlineData(ConnectionMode.Secure)]
    public async Task A_client_with_a_ticket_is_served_and_the_service_sees_the_tickets_caps(ConnectionMode mode)
    {
        await using var osd = new Service();
        var tickets = 0;
        var client = osd.Client("client.vm", () =>
        {
            tickets++;
            return osd.Issue("client.vm", TimeSpan.FromHours(1));
        }, mode);
        await client.StartAsync();
        for (var i = 0; i < 20; i++)
        {
            await client.Session.SendAsync(300, BitConverter.GetBytes(i));
        }
        using var cts = new CancellationTokenSource(Patience);
        for (var i = 0; i < 20; i++)
        {
            var (session, m) = await osd.Fixture.Received.Reader.ReadAsync(cts.Token);
            Assert.Equal(i, BitConverter.ToInt32(m.Payload.Span));
            Assert.Equal("client.vm", session.PeerEntity);
            Assert.NotNull(session.PeerCaps);
            Assert.True(Authorizer.IsAllowed(session.PeerCaps!, "osd", Access.Write, "vm"));
            Assert.False(Authorizer.IsAllowed(session.PeerCaps!, "osd", Access.Write, "other"));
        }
        // A cut: the client reconnects with a fresh authenticator (the ticket source is asked again) and resumes.
        client.DropConnection();
        await client.Session.SendAsync(300, BitConverter.GetBytes(20));
        var (_, last) = await osd.Fixture.Received.Reader.ReadAsync(cts.Token);
        Assert.Equal(20, BitConverter.ToInt32(last.Payload.Span));
        // (The count moves just after the handshake, which may be after the resent message arrived.)
        for (var i = 0; i < 500 && client.Connects < 2; i++)
        {
            await Task.Delay(10);
        }
        Assert.True(client.Connects >= 2 && tickets >= 2, $"{client.Connects} connects, {tickets} tickets asked for");
        Assert.Contains(osd.Log, l => l.Contains("client.vm connected", StringComparison.Ordinal) && l.Contains("ticket", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Expired_foreign_forged_and_misattributed_tickets_are_refused()
    {
        await using var osd = new Service();
        async Task<string> RefusedAsync(string entity, Func<IssuedTicket> ticket)
        {
            var client = osd.Client(entity, ticket);
            var e = await Assert.ThrowsAsync<AuthenticationException>(() => client.StartAsync().WaitAsync(Patience));
            return e.Message;
        }

        // Expired an hour ago.
        Assert.Contains("expired", await RefusedAsync("client.vm", () =>
            osd.Issue("client.vm", TimeSpan.FromHours(1), DateTimeOffset.UtcNow.AddHours(-2))));

        // Sealed for another service (under its secrets, which this service does not hold).
        var mds = new ServiceSecrets("mds");
        mds.Rotate(DateTimeOffset.UtcNow, TimeSpan.FromHours(2));
        Assert.Contains("does not", await RefusedAsync("client.vm", () =>
            Tickets.Issue(mds, "client.vm", VmCaps, DateTimeOffset.UtcNow, TimeSpan.FromHours(1))));

        // A stolen ticket without its session key: the authenticator cannot be made.
        Assert.Contains("session key", await RefusedAsync("client.vm", () =>
            osd.Issue("client.vm", TimeSpan.FromHours(1)) with { SessionKey = new byte[32] }));

        // Someone else's ticket (with its session key) presented under another name.
        Assert.Contains("belongs to client.vm", await RefusedAsync("client.other", () => osd.Issue("client.vm", TimeSpan.FromHours(1))));

        // No secret or key shows up in what was logged.
        Assert.DoesNotContain(osd.Log, l => l.Contains(osd.Secrets.Current.Key.ToBase64(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_ticket_source_that_cannot_answer_yet_is_asked_again_after_the_backoff()
    {
        // The monitors were unreachable (or had no key yet) for the first attempts: the client keeps trying, as with
        // a refused TCP connect, instead of giving up or dying silently.
        await using var osd = new Service();
        var asked = 0;
        var client = osd.Client("client.vm", () => ++asked < 3
            ? throw new TimeoutException("the monitors did not answer")
            : osd.Issue("client.vm", TimeSpan.FromHours(1)));
        await client.StartAsync().WaitAsync(Patience);
        Assert.Equal(3, asked);
        Assert.Contains(osd.Log, l => l.Contains("no ticket for client.vm: the monitors did not answer", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_server_that_takes_no_tickets_refuses_one_plainly()
    {
        await using var mon = new Service(takesTickets: false);
        var client = mon.Client("client.vm", () => mon.Issue("client.vm", TimeSpan.FromHours(1)));
        var e = await Assert.ThrowsAsync<AuthenticationException>(() => client.StartAsync().WaitAsync(Patience));
        Assert.Contains("does not take tickets", e.Message);
    }

    [Fact]
    public async Task A_replayed_hello_is_refused()
    {
        // Someone who recorded a client's opening frame (ticket and authenticator) sends it again on a connection of
        // their own: the authenticator was used once, so the service refuses it before any challenge.
        await using var osd = new Service();
        var ticket = osd.Issue("client.vm", TimeSpan.FromHours(1));
        var hello = new HelloFrame(new HandshakeClient("client.vm", new Secret(ticket.SessionKey)).Hello(), Guid.NewGuid(), 0, ConnectionMode.Crc)
        {
            Ticket = ticket.Ticket,
            Authenticator = Tickets.Authenticator(ticket.SessionKey, DateTimeOffset.UtcNow),
        }.Encode();

        async Task<Frame> FirstAnswerAsync()
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(osd.Endpoint);
            await using var c = new Connection(new NetworkStream(socket, ownsSocket: true), "test", 1 << 20, _ => { });
            await c.SendAsync(MessengerServer.Control(FrameTypes.Hello, hello.Length), hello);
            using var cts = new CancellationTokenSource(Patience);
            return await c.ReadFrameAsync(cts.Token);
        }

        Assert.Equal(FrameTypes.Challenge, (await FirstAnswerAsync()).Header.Type);
        var replay = await FirstAnswerAsync();
        Assert.Equal(FrameTypes.Reject, replay.Header.Type);
        Assert.Contains("replay", System.Text.Encoding.UTF8.GetString(replay.Payload.Span));
    }

    [Fact]
    public async Task Damaged_and_random_tickets_are_refused_with_a_reason_and_the_service_goes_on()
    {
        // Whatever a peer puts where the ticket and authenticator go — random bytes of any size, a real ticket with a
        // flipped bit or cut short, a real ticket with a random authenticator — costs only its own connection: a
        // refusal with a reason, never an internal error, and a good client is served afterwards.
        var seed = Seeds.Get();
        var random = new Random(seed);
        await using var osd = new Service();
        var real = osd.Issue("client.vm", TimeSpan.FromHours(1));
        byte[] Bytes(int n)
        {
            var b = new byte[n];
            random.NextBytes(b);
            return b;
        }
        for (var i = 0; i < 60; i++)
        {
            var ticket = (i % 4) switch
            {
                0 => Bytes(random.Next(0, 3000)),
                1 => Flip(real.Ticket),
                2 => real.Ticket[..random.Next(1, real.Ticket.Length)],
                _ => real.Ticket,
            };
            var authenticator = i % 4 == 3 || random.Next(3) == 0 ? Bytes(random.Next(0, 100)) : Tickets.Authenticator(real.SessionKey, DateTimeOffset.UtcNow);
            var hello = new HelloFrame(new HandshakeClient("client.vm", new Secret(real.SessionKey)).Hello(), Guid.NewGuid(), 0, ConnectionMode.Crc)
            {
                Ticket = ticket.Length == 0 ? [1] : ticket,
                Authenticator = authenticator,
            }.Encode();
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(osd.Endpoint);
            await using var c = new Connection(new NetworkStream(socket, ownsSocket: true), "test", 1 << 20, _ => { });
            await c.SendAsync(MessengerServer.Control(FrameTypes.Hello, hello.Length), hello);
            using var cts = new CancellationTokenSource(Patience);
            var answer = await c.ReadFrameAsync(cts.Token);
            Assert.True(answer.Header.Type == FrameTypes.Reject, $"variant {i} was not refused (seed {seed})");
        }
        Assert.DoesNotContain(osd.Log, l => l.Contains("BUG", StringComparison.Ordinal) || l.Contains("internal error", StringComparison.Ordinal));
        var good = osd.Client("client.vm", () => osd.Issue("client.vm", TimeSpan.FromHours(1)));
        await good.StartAsync().WaitAsync(Patience);

        byte[] Flip(byte[] b)
        {
            var copy = (byte[])b.Clone();
            copy[random.Next(copy.Length)] ^= (byte)(1 << random.Next(8));
            return copy;
        }
    }
}

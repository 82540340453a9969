using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;
using Appliance.Wire.Messenger;
using Appliance.Platform.Checksums;

namespace Appliance.Wire.Tests.Messenger;

public sealed class MessengerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static byte[] Numbered(int i, int size = 16)
    {
        var b = new byte[Math.Max(size, 8)];
        BinaryPrimitives.WriteInt32LittleEndian(b, i);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), Crc32C.Compute(b.AsSpan(0, 4)));
        return b;
    }

    /// <summary>Drops the connection from the client's end or the server's, as <paramref name="r"/> picks.</summary>
    private static void CutEitherEnd(MessengerFixture f, MessengerClient client, Random r)
    {
        if (r.Next(2) == 0)
        {
            client.DropConnection();
        }
        else
        {
            f.Server.DropConnections();
        }
    }

    private static async Task<List<int>> ReceiveAsync(MessengerFixture f, int count, Func<string>? state = null, Action<int>? afterEach = null)
    {
        var got = new List<int>();
        using var cts = new CancellationTokenSource(Patience);
        while (got.Count < count)
        {
            Message m;
            try
            {
                (_, m) = await f.Received.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"only {got.Count} of {count} messages arrived within {Patience}; {state?.Invoke()}; last log lines:\n" +
                    string.Join('\n', f.Log.TakeLast(30)));
                throw;
            }
            Assert.Equal(Crc32C.Compute(m.Payload.Span[..4]), BinaryPrimitives.ReadUInt32LittleEndian(m.Payload.Span[4..]));
            got.Add(BinaryPrimitives.ReadInt32LittleEndian(m.Payload.Span));
            afterEach?.Invoke(got.Count - 1);
        }
        return got;
    }

    [Theory]
    [InlineData(ConnectionMode.Crc, false)]
    [InlineData(ConnectionMode.Secure, false)]
    [InlineData(ConnectionMode.Crc, true)]
    [InlineData(ConnectionMode.Secure, true)]
    public async Task Messages_arrive_once_and_in_order_over_tcp_and_unix_sockets(ConnectionMode mode, bool unix)
    {
        await using var f = new MessengerFixture(unix: unix);
        var client = f.Client(mode);
        await client.StartAsync();
        for (var i = 0; i < 2000; i++)
        {
            await client.Session.SendAsync(MessengerFixture.Data, Numbered(i, 64));
        }
        Assert.Equal(Enumerable.Range(0, 2000), await ReceiveAsync(f, 2000));
    }

    [Fact]
    public async Task Requests_get_their_replies()
    {
        await using var f = new MessengerFixture();
        f.ServerReply = async (session, m) => await session.SendAsync(MessengerFixture.Data + 1, m.Payload.ToArray().Reverse().ToArray(), replyTo: m.Seq);
        var client = f.Client(ConnectionMode.Secure);
        await client.StartAsync();
        var replies = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
            client.Session.RequestAsync(MessengerFixture.Data, new byte[] { (byte)i, 1, 2 }, Patience)));
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(new byte[] { 2, 1, (byte)i }, replies[i].Payload.ToArray());
        }
    }

    [Fact]
    public async Task Cutting_the_connection_repeatedly_under_load_loses_and_duplicates_nothing()
    {
        var seed = Seeds.Get();
        var random = new Random(seed);
        // The receiver takes messages only as the test reads them, so the sender's window stays full.
        await using var f = new MessengerFixture(receivedCapacity: 64);
        var client = f.Client(ConnectionMode.Secure);
        await client.StartAsync();
        var total = Seeds.Soak ? 200_000 : 20_000;
        var cuts = Seeds.Soak ? 500 : 40;

        var sender = Task.Run(async () =>
        {
            for (var i = 0; i < total; i++)
            {
                await client.Session.SendAsync(MessengerFixture.Data, Numbered(i, random.Next(8, 2000)));
            }
        });
        // Cuts at chosen points of the stream, from either end, so they always land with messages in flight (a
        // cutter on a timer found the whole stream sent before its first cut once socket continuations ran inline).
        var r = new Random(seed + 1);
        var cutAfter = Enumerable.Range(0, cuts).Select(_ => r.Next(1, total - 100)).ToHashSet();
        void Cut(int received)
        {
            if (cutAfter.Contains(received))
            {
                CutEitherEnd(f, client, r);
            }
        }
        var received = await ReceiveAsync(f, total, () =>
            $"client connects {client.Connects}, client unacked {client.Session.UnackedMessages}, sender done {sender.IsCompleted}, " +
            $"server sessions {string.Join(",", f.Server.Sessions.Select(s => s.LastDelivered))}, server connections {f.Server.ConnectionCount}, sender {sender.Status} {sender.Exception?.InnerException?.Message}",
            Cut);
        await sender.WaitAsync(Patience);

        Assert.Equal(Enumerable.Range(0, total), received);
        Assert.True(client.Connects > 1, $"the test must actually have cut connections (seed {seed})");
        Assert.True(client.Session.Resent > 0, $"cuts must have forced resends (seed {seed})");
        Assert.Contains(f.Log, l => l.Contains("dropped by", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(ConnectionMode.Crc, true)]
    [InlineData(ConnectionMode.Secure, true)]
    [InlineData(ConnectionMode.Crc, false)]
    [InlineData(ConnectionMode.Secure, false)]
    public async Task Large_payloads_arrive_intact_and_in_order_across_cuts(ConnectionMode mode, bool handOver)
    {
        // Large payloads, copied or sent without a copy (read from the caller's memory on every send, including the
        // resends after a cut), with small ones mixed in; both ends cut the connection. Every byte of every message
        // is checked. (This caught a reordering: after a reconnect the old connection's read loop could hand over
        // seq n after the new loop had handed over n + 1.)
        var seed = Seeds.Get();
        var random = new Random(seed);
        // The receiver takes messages only as the test reads them, so the sender's window stays full.
        await using var f = new MessengerFixture(receivedCapacity: 4);
        var client = f.Client(mode);
        await client.StartAsync();
        const int total = 300;
        static byte[] Content(int i, int size)
        {
            var b = new byte[size];
            new Random(i).NextBytes(b);
            BinaryPrimitives.WriteInt32LittleEndian(b, i);
            return b;
        }
        var sizes = Enumerable.Range(0, total).Select(_ => random.Next(3) == 0 ? random.Next(8, 4000) : random.Next(64 << 10, 700 << 10)).ToArray();
        var sender = Task.Run(async () =>
        {
            for (var i = 0; i < total; i++)
            {
                await (handOver
                    ? client.Session.SendWithoutCopyAsync(MessengerFixture.Data, Content(i, sizes[i]))
                    : client.Session.SendAsync(MessengerFixture.Data, Content(i, sizes[i])));
            }
        });
        // The cuts come from the receiving side at chosen messages, so they always land mid-stream with later
        // messages in flight (a cutter on a timer found the whole stream sent before its first cut once socket
        // continuations ran inline).
        var r = new Random(seed + 1);
        var cutAfter = Enumerable.Range(0, 10).Select(_ => r.Next(1, total - 20)).ToHashSet();
        using var cts = new CancellationTokenSource(Patience);
        for (var i = 0; i < total; i++)
        {
            var (_, m) = await f.Received.Reader.ReadAsync(cts.Token);
            Assert.Equal(i, BinaryPrimitives.ReadInt32LittleEndian(m.Payload.Span));
            Assert.True(m.Payload.Span.SequenceEqual(Content(i, sizes[i])), $"message {i} ({sizes[i]} bytes) arrived altered (seed {seed})");
            if (cutAfter.Contains(i))
            {
                CutEitherEnd(f, client, r);
            }
        }
        await sender.WaitAsync(Patience);
        Assert.True(client.Connects > 1, $"the test must actually have cut connections (seed {seed})");
        Assert.True(client.Session.Resent > 0, $"cuts must have forced resends (seed {seed})");
    }

    [Theory]
    [InlineData(ConnectionMode.Crc)]
    [InlineData(ConnectionMode.Secure)]
    public async Task A_kept_payload_stays_intact_after_its_handler_returned_until_it_is_released(ConnectionMode mode)
    {
        // The handler keeps every payload without copying it and returns at once, as an OSD does with a write's
        // data; the messages after it arrive meanwhile in buffers from the same pool. Had a kept buffer gone back to
        // the pool when its handler returned, a later message would have been received into it and the check below
        // would see that message's bytes.
        var seed = Seeds.Get();
        var random = new Random(seed);
        await using var f = new MessengerFixture();
        var kept = new ConcurrentQueue<(IDisposable Lease, ReadOnlyMemory<byte> Payload)>();
        f.ServerReply = (_, m) =>
        {
            kept.Enqueue((m.Keep(), m.Payload));
            return ValueTask.CompletedTask;
        };
        var client = f.Client(mode);
        await client.StartAsync();
        const int total = 120;
        static byte[] Content(int i, int size)
        {
            var b = new byte[size];
            new Random(i).NextBytes(b);
            BinaryPrimitives.WriteInt32LittleEndian(b, i);
            return b;
        }
        var sizes = Enumerable.Range(0, total).Select(_ => random.Next(2) == 0 ? random.Next(8, 4000) : random.Next(64 << 10, 300 << 10)).ToArray();
        for (var round = 0; round < 2; round++)
        {
            // The second round reuses the buffers the first one released.
            for (var i = 0; i < total; i++)
            {
                await client.Session.SendAsync(MessengerFixture.Data, Content(i, sizes[i]));
            }
            using var cts = new CancellationTokenSource(Patience);
            while (kept.Count < total)
            {
                await Task.Delay(5, cts.Token);
            }
            var all = kept.ToArray();
            kept.Clear();
            for (var i = 0; i < total; i++)
            {
                Assert.True(all[i].Payload.Span.SequenceEqual(Content(i, sizes[i])), $"round {round}: kept message {i} ({sizes[i]} bytes) changed after its handler returned (seed {seed})");
                all[i].Lease.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_wrong_key_or_unknown_entity_is_refused_for_good()
    {
        await using var f = new MessengerFixture();
        var wrong = f.Client(key: Secret.Generate());
        var e = await Assert.ThrowsAsync<AuthenticationException>(() => wrong.StartAsync().WaitAsync(Patience));
        Assert.Contains("wrong key", e.Message);
        var unknown = f.Client(entity: "client.nobody");
        e = await Assert.ThrowsAsync<AuthenticationException>(() => unknown.StartAsync().WaitAsync(Patience));
        Assert.Contains("unknown entity", e.Message);
        Assert.DoesNotContain(f.Log, l => l.Contains(f.ClientKey.ToBase64(), StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_secure_only_server_refuses_crc_clients()
    {
        await using var f = new MessengerFixture(new MessengerOptions { MinimumMode = ConnectionMode.Secure });
        var e = await Assert.ThrowsAsync<AuthenticationException>(() => f.Client(ConnectionMode.Crc).StartAsync().WaitAsync(Patience));
        Assert.Contains("requires Secure", e.Message);
        await f.Client(ConnectionMode.Secure).StartAsync().WaitAsync(Patience);
    }

    [Fact]
    public async Task Hostile_frames_close_only_their_own_connection()
    {
        var seed = Seeds.Get();
        var random = new Random(seed);
        await using var f = new MessengerFixture(new MessengerOptions { Session = new SessionOptions { MaxPayload = 1 << 20 } });
        var good = f.Client(ConnectionMode.Secure);
        await good.StartAsync();
        var endpoint = (IPEndPoint)f.Endpoint;

        var hello = new HelloFrame(new HandshakeClient("client.test", f.ClientKey).Hello(), Guid.NewGuid(), 0, ConnectionMode.Crc).Encode();
        byte[] ValidHello()
        {
            using var w = new WireWriter();
            FrameParser.Write(w, new FrameHeader(FrameTypes.Hello, 0, 0, 0, 0, hello.Length), hello);
            return w.ToArray();
        }
        var attacks = new List<(string Name, byte[] Bytes)>
        {
            ("random", RandomBytes(random, 500)),
            ("http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray()),
            ("truncated", ValidHello()[..30]),
            ("oversized", Oversized()),
            ("bit-flipped", Flip(ValidHello(), random)),
            ("wrong first frame", Frame(FrameTypes.Ack, [])),
        };
        for (var i = 0; i < 20; i++)
        {
            attacks.Add(($"random {i}", RandomBytes(random, random.Next(1, 3000))));
        }
        var sent = 0;
        foreach (var (name, bytes) in attacks)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(endpoint);
            await socket.SendAsync(bytes);
            socket.Shutdown(SocketShutdown.Send);
            // The server must close on us (read returns 0) rather than hang or crash.
            var buffer = new byte[4096];
            using var cts = new CancellationTokenSource(Patience);
            while (await socket.ReceiveAsync(buffer, cts.Token) > 0)
            {
            }
            // Meanwhile the good client is still served.
            await good.Session.SendAsync(MessengerFixture.Data, Numbered(sent++));
            Assert.Equal([sent - 1], await ReceiveAsync(f, 1));
            _ = name;
        }
        Assert.Contains(f.Log, l => l.Contains("bad magic", StringComparison.Ordinal));
        Assert.Contains(f.Log, l => l.Contains("exceeds the limit", StringComparison.Ordinal));
        Assert.Contains(f.Log, l => l.Contains("checksum mismatch", StringComparison.Ordinal));
        Assert.Contains(f.Log, l => l.Contains("in the middle of a frame", StringComparison.Ordinal));
        Assert.DoesNotContain(f.Log, l => l.Contains("BUG", StringComparison.Ordinal));
        var deadline = DateTime.UtcNow + Patience;
        while (f.Server.ConnectionCount != 1 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.Equal(1, f.Server.ConnectionCount); // only the good client is left: nothing leaked
    }

    [Fact]
    public async Task An_unauthenticated_peer_cannot_make_the_server_buffer_a_large_frame()
    {
        // Before authentication a frame may declare at most Connection.HandshakeMaxPayload: many peers that each
        // declare a frame the session would allow (8 MiB here) and then send nothing are refused from the header,
        // instead of each pinning a buffer that size until the handshake times out.
        await using var f = new MessengerFixture();
        var header = new byte[FrameHeader.Size];
        new FrameHeader(FrameTypes.Hello, 0, 0, 0, 0, 8 << 20).Write(header);
        var peers = await Task.WhenAll(Enumerable.Range(0, 32).Select(async _ =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(f.Endpoint);
            await socket.SendAsync(header);
            return socket;
        }));
        using var cts = new CancellationTokenSource(Patience);
        foreach (var socket in peers)
        {
            using (socket)
            {
                // Closed by the server without our sending a byte of the payload (a hung read would time out).
                var buffer = new byte[4096];
                while (await socket.ReceiveAsync(buffer, cts.Token) > 0)
                {
                }
            }
        }
        Assert.Equal(32, f.Log.Count(l => l.Contains("exceeds the limit", StringComparison.Ordinal)));
        // An authenticated client may still send what its session allows.
        var client = f.Client();
        await client.StartAsync();
        await client.Session.SendAsync(MessengerFixture.Data, Numbered(7, 4 << 20));
        Assert.Equal([7], await ReceiveAsync(f, 1));
    }

    [Fact]
    public async Task An_out_of_order_frame_after_a_valid_handshake_closes_the_connection()
    {
        await using var f = new MessengerFixture();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(f.Endpoint);
        await using var c = new Connection(new NetworkStream(socket, ownsSocket: false), "test", 1 << 20, _ => { });
        var hs = new HandshakeClient("client.test", f.ClientKey);
        var hello = new HelloFrame(hs.Hello(), Guid.NewGuid(), 0, ConnectionMode.Crc).Encode();
        await c.SendAsync(new FrameHeader(FrameTypes.Hello, 0, 0, 0, 0, hello.Length), hello);
        var challenge = await c.ReadFrameAsync();
        var proof = hs.Answer(challenge.Payload.Span);
        await c.SendAsync(new FrameHeader(FrameTypes.Proof, 0, 0, 0, 0, proof.Length), proof);
        var accept = await c.ReadFrameAsync();
        Assert.Equal(FrameTypes.Accept, accept.Header.Type);
        await c.SendAsync(new FrameHeader(MessengerFixture.Data, 0, 1, 0, 0, 8), Numbered(0, 8));
        await c.SendAsync(new FrameHeader(MessengerFixture.Data, 0, 3, 0, 0, 8), Numbered(2, 8)); // seq 2 skipped
        Assert.Equal([0], await ReceiveAsync(f, 1));
        await Assert.ThrowsAsync<ConnectionClosedException>(async () =>
        {
            while (true)
            {
                await c.ReadFrameAsync(new CancellationTokenSource(Patience).Token);
            }
        });
        Assert.Contains(f.Log, l => l.Contains("out-of-order frame: got seq 3, expected 2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_tampered_secure_frame_ends_the_connection_and_no_bad_data_is_delivered()
    {
        await using var f = new MessengerFixture();
        await using var proxy = new TamperingProxy((IPEndPoint)f.Endpoint);
        var client = f.Client(ConnectionMode.Secure, endpoint: proxy.Endpoint);
        await client.StartAsync();
        for (var i = 0; i < 100; i++)
        {
            await client.Session.SendAsync(MessengerFixture.Data, Numbered(i, 100));
        }
        Assert.Equal(Enumerable.Range(0, 100), await ReceiveAsync(f, 100));

        proxy.FlipNextClientByte();
        for (var i = 100; i < 200; i++)
        {
            await client.Session.SendAsync(MessengerFixture.Data, Numbered(i, 100));
        }
        // Every message still arrives exactly once and intact (ReceiveAsync checks each one's crc), via a reconnect.
        Assert.Equal(Enumerable.Range(100, 100), await ReceiveAsync(f, 100));
        Assert.True(proxy.Flipped);
        Assert.Contains(f.Log, l => l.Contains("failed authentication", StringComparison.Ordinal));
        // The resent messages can be delivered before the client has counted its new connection.
        for (var wait = 0; wait < 100 && client.Connects < 2; wait++)
        {
            await Task.Delay(50);
        }
        Assert.True(client.Connects >= 2, $"connects: {client.Connects}");
    }

    private static byte[] RandomBytes(Random r, int n)
    {
        var b = new byte[n];
        r.NextBytes(b);
        return b;
    }

    private static byte[] Flip(byte[] b, Random r)
    {
        b[r.Next(b.Length)] ^= (byte)(1 << r.Next(8));
        return b;
    }

    private static byte[] Frame(ushort type, byte[] payload)
    {
        using var w = new WireWriter();
        FrameParser.Write(w, new FrameHeader(type, 0, 0, 0, 0, payload.Length), payload);
        return w.ToArray();
    }

    private static byte[] Oversized()
    {
        var header = new byte[FrameHeader.Size];
        new FrameHeader(FrameTypes.Hello, 0, 0, 0, 0, 512 << 20).Write(header);
        return header;
    }
}

public sealed class MessengerHandlerTests
{
    [Fact]
    public async Task Handlers_may_send_on_their_own_session_without_deadlocking_even_past_the_window()
    {
        // Both sides echo everything back from inside their handlers with a window far smaller than the traffic:
        // if handlers ran on the read loop, both sides would wait for acknowledgements nobody reads.
        var small = new MessengerOptions { Session = new SessionOptions { MaxUnackedMessages = 8, MaxUnackedBytes = 64 << 10 } };
        var keyring = new Appliance.Wire.Auth.Keyring();
        var key = Appliance.Wire.Auth.Secret.Generate();
        keyring.Add(new Appliance.Wire.Auth.KeyringEntry("client.echo", key, new Dictionary<string, string>()));
        await using var server = new MessengerServer(e => keyring.Find(e)?.Key, small,
            async (session, m) => await session.SendAsync(301, m.Payload), _ => { });
        var endpoint = server.ListenTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        var echoed = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        const int count = 500;
        await using var client = new MessengerClient(endpoint, "client.echo", key, ConnectionMode.Crc, small,
            (_, _) =>
            {
                if (Interlocked.Increment(ref echoed) == count)
                {
                    done.TrySetResult();
                }
                return ValueTask.CompletedTask;
            }, _ => { });
        await client.StartAsync();
        for (var i = 0; i < count; i++)
        {
            await client.Session.SendAsync(300, new byte[4096]);
        }
        await done.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(count, echoed);
    }

    [Fact]
    public async Task Handlers_run_one_at_a_time_in_order_even_when_some_wait_and_payloads_last_until_they_finish()
    {
        // Handlers run on the read loop while nothing queues and move to the dispatcher when they wait: either way
        // one at a time, in sequence order, and a payload stays valid until its handler's task completes.
        var keyring = new Appliance.Wire.Auth.Keyring();
        var key = Appliance.Wire.Auth.Secret.Generate();
        keyring.Add(new Appliance.Wire.Auth.KeyringEntry("client.x", key, new Dictionary<string, string>()));
        const int count = 90;
        var order = new List<int>();
        var running = 0;
        var violations = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new MessengerServer(e => keyring.Find(e)?.Key, new MessengerOptions(), async (_, m) =>
        {
            if (Interlocked.Increment(ref running) != 1)
            {
                violations.Enqueue("two handlers at once");
            }
            int index = m.Payload.Span[0];
            lock (order)
            {
                order.Add(index);
            }
            if (index % 3 == 0)
            {
                await Task.Delay(5);
            }
            if (m.Payload.Span.IndexOfAnyExcept((byte)index) >= 0)
            {
                violations.Enqueue($"payload of message {index} changed under its handler");
            }
            Interlocked.Decrement(ref running);
            if (index == count - 1)
            {
                done.TrySetResult();
            }
        }, _ => { });
        var endpoint = server.ListenTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        await using var client = new MessengerClient(endpoint, "client.x", key, ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        await client.StartAsync();
        for (var i = 0; i < count; i++)
        {
            var payload = new byte[i % 2 == 0 ? 64 : 20_000];
            Array.Fill(payload, (byte)i);
            await client.Session.SendAsync(300, payload);
            if (i % 10 == 0)
            {
                await Task.Delay(2); // sometimes let the receiver go idle, so the inline path is taken too
            }
        }
        await done.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Empty(violations);
        Assert.Equal(Enumerable.Range(0, count), order);
    }

    [Fact]
    public async Task A_throwing_handler_is_reported_and_the_session_goes_on()
    {
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var keyring = new Appliance.Wire.Auth.Keyring();
        var key = Appliance.Wire.Auth.Secret.Generate();
        keyring.Add(new Appliance.Wire.Auth.KeyringEntry("client.x", key, new Dictionary<string, string>()));
        var seen = System.Threading.Channels.Channel.CreateUnbounded<byte>();
        await using var server = new MessengerServer(e => keyring.Find(e)?.Key, new MessengerOptions(), async (_, m) =>
        {
            if (m.Payload.Span[0] == 0)
            {
                throw new InvalidOperationException("handler bug");
            }
            await seen.Writer.WriteAsync(m.Payload.Span[0]);
        }, log.Enqueue);
        var endpoint = server.ListenTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        await using var client = new MessengerClient(endpoint, "client.x", key, ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        await client.StartAsync();
        await client.Session.SendAsync(300, new byte[] { 0 });
        await client.Session.SendAsync(300, new byte[] { 7 });
        Assert.Equal(7, await seen.Reader.ReadAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token));
        Assert.Contains(log, l => l.Contains("BUG in the message handler", StringComparison.Ordinal) && l.Contains("handler bug", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_second_server_cannot_listen_on_a_port_another_listens_on()
    {
        // With SO_REUSEPORT (what SocketOptionName.ReuseAddress sets on Linux) both would listen and the kernel would
        // split connections between them: a client could reach another daemon than the one at its address.
        await using var first = new MessengerServer(_ => null, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        var endpoint = (System.Net.IPEndPoint)first.ListenTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        await using var second = new MessengerServer(_ => null, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        var e = Assert.Throws<System.Net.Sockets.SocketException>(() => second.ListenTcp(endpoint));
        Assert.Equal(System.Net.Sockets.SocketError.AddressAlreadyInUse, e.SocketErrorCode);
    }
}

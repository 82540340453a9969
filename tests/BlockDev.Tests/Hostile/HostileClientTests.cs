using System.Buffers.Binary;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Appliance.BlockDev.Nbd.Protocol;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.BlockDev.Tests.Hostile;

/// <summary>Misbehaving clients, written byte by byte: each gets the spec's error reply or a closed connection,
/// and a well-behaved client on the same server keeps working.</summary>
public sealed class HostileClientTests
{
    private const long Size = 8L << 20;

    private static async Task AssertHealthyAsync(TestServer s)
    {
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        await c.SendRequestAsync(NbdCommand.Write, 1, 8192, 4096, payload: data);
        Assert.Equal(0u, (await c.ReadReplyAsync()).ErrorValue);
        await c.SendRequestAsync(NbdCommand.Read, 2, 8192, 4096);
        var back = new byte[4096];
        Assert.Equal(0u, await c.ReadStructuredReadAsync(2, 8192, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Bad_option_magic_closes_the_connection_and_others_are_unaffected()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var bad = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await bad.HandshakeAsync();
        await bad.SendOptionAsync((uint)NbdOption.List, [], magic: 0x1122334455667788);
        Assert.True(await bad.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
        await AssertHealthyAsync(s);
    }

    [Fact]
    public async Task Unknown_client_flags_close_the_connection()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var bad = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await bad.HandshakeAsync(clientFlags: 0x80);
        Assert.True(await bad.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Bad_request_magic_closes_the_connection_and_others_are_unaffected()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var bad = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await bad.NegotiateAsync("disk");
        await bad.Stream.WriteAsync(RawNbdClient.Request(NbdCommand.Read, 1, 0, 512, magic: 0xdeadbeef));
        Assert.True(await bad.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
        await AssertHealthyAsync(s);
    }

    [Fact]
    public async Task Unknown_options_get_err_unsup_and_negotiation_goes_on()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.HandshakeAsync();
        foreach (var option in new uint[] { 4, (uint)NbdOption.ExtendedHeaders, 12345, 0xFFFFFFFF })
        {
            await c.SendOptionAsync(option, [1, 2, 3]);
            var r = await c.ReadOptionReplyAsync();
            Assert.Equal(option, r.Option);
            Assert.Equal(OptionReplyType.ErrUnsup, r.Type);
        }
        // An oversized option is skipped (not buffered) and refused as too big.
        await c.SendOptionAsync(777, new byte[1 << 20]);
        Assert.Equal(OptionReplyType.ErrTooBig, (await c.ReadOptionReplyAsync()).Type);
        // Malformed INFO, meta context before structured replies, and data on LIST are invalid, not fatal.
        await c.SendOptionAsync((uint)NbdOption.Info, [0, 0, 0, 99, 1]);
        Assert.Equal(OptionReplyType.ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.SetMetaContext, RawNbdClient.MetaPayload("disk", NbdLimits.BaseAllocation));
        Assert.Equal(OptionReplyType.ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.List, [1]);
        Assert.Equal(OptionReplyType.ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        // STARTTLS on a server without a certificate is refused by policy.
        await c.SendOptionAsync((uint)NbdOption.StartTls, []);
        Assert.Equal(OptionReplyType.ErrPolicy, (await c.ReadOptionReplyAsync()).Type);
        // Path traversal and unknown names are unknown exports.
        foreach (var name in new[] { "../images/disk", "/etc/passwd", "disk/../disk", "nope" })
        {
            await c.SendOptionAsync((uint)NbdOption.Info, RawNbdClient.InfoPayload(name));
            Assert.Equal(OptionReplyType.ErrUnknown, (await c.ReadOptionReplyAsync()).Type);
        }
        await c.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("disk"));
        Assert.Equal(OptionReplyType.Info, (await c.ReadOptionReplyAsync()).Type);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        await c.SendRequestAsync(NbdCommand.Read, 9, 0, 512);
        var reply = await c.ReadReplyAsync(_ => 512);
        Assert.Equal(0u, reply.Error);
        Assert.Equal(512, reply.Payload.Length);
    }

    [Fact]
    public async Task Bad_requests_get_the_specified_errors_and_the_connection_goes_on()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.NegotiateAsync("disk");
        async Task<uint> ErrorOf(NbdCommand cmd, ulong offset, uint length, CommandFlags flags = 0, byte[]? payload = null)
        {
            await c.SendRequestAsync(cmd, 42, offset, length, flags, payload);
            uint error = 0;
            while (true)
            {
                var r = await c.ReadReplyAsync();
                Assert.Equal(42ul, r.Cookie);
                error = error != 0 ? error : r.ErrorValue;
                if (r.Done)
                {
                    return error;
                }
            }
        }
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Read, Size - 512, 1024));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Read, ulong.MaxValue, 512));
        Assert.Equal((uint)NbdError.Overflow, await ErrorOf(NbdCommand.Read, 0, (64u << 20)));
        Assert.Equal((uint)NbdError.NoSpc, await ErrorOf(NbdCommand.Write, Size - 512, 1024, payload: new byte[1024]));
        Assert.Equal((uint)NbdError.NoSpc, await ErrorOf(NbdCommand.WriteZeroes, Size, 512));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Trim, Size - 1, 2));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf((NbdCommand)99, 0, 0));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Read, 0, 512, (CommandFlags)0x400));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Write, 0, 512, CommandFlags.ReqOne, new byte[512]));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Flush, 0, 512));
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.BlockStatus, Size, 512));
        // A write longer than the 32 MiB maximum: refused, its payload skipped, the stream stays in sync.
        var big = (32u << 20) + 4096;
        Assert.Equal((uint)NbdError.Inval, await ErrorOf(NbdCommand.Write, 0, big, payload: new byte[big]));
        // Still in sync: a valid write and read round-trip.
        var data = new byte[1000];
        Random.Shared.NextBytes(data);
        Assert.Equal(0u, await ErrorOf(NbdCommand.Write, 12345, 1000, payload: data));
        await c.SendRequestAsync(NbdCommand.Read, 7, 12345, 1000);
        var back = new byte[1000];
        Assert.Equal(0u, await c.ReadStructuredReadAsync(7, 12345, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Without_structured_replies_errors_are_simple_and_block_status_is_refused()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        var (_, flags) = await c.NegotiateAsync("disk", structured: false);
        Assert.Equal(TransmissionFlags.None, flags & TransmissionFlags.SendDf);
        await c.SendRequestAsync(NbdCommand.Read, 1, 0, 64u << 20);
        var r = await c.ReadReplyAsync(_ => 0);
        Assert.Null(r.Type);
        Assert.Equal((uint)NbdError.Inval, r.Error);
        await c.SendRequestAsync(NbdCommand.BlockStatus, 2, 0, 4096);
        r = await c.ReadReplyAsync(_ => 0);
        Assert.Equal((uint)NbdError.Inval, r.Error);
    }

    [Fact]
    public async Task A_read_only_export_refuses_writes_with_eperm()
    {
        await using var s = await TestServer.StartAsync((cat, log) => new NbdServerOptions { Catalog = cat, Log = log, ReadOnly = true }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        var (_, flags) = await c.NegotiateAsync("disk");
        Assert.True((flags & TransmissionFlags.ReadOnly) != 0);
        Assert.True((flags & TransmissionFlags.SendTrim) == 0);
        foreach (var (cmd, payload) in new[] { (NbdCommand.Write, new byte[512]), (NbdCommand.Trim, null), (NbdCommand.WriteZeroes, null) })
        {
            await c.SendRequestAsync(cmd, 5, 0, 512, payload: payload);
            Assert.Equal((uint)NbdError.Perm, (await c.ReadReplyAsync()).ErrorValue);
        }
        await c.SendRequestAsync(NbdCommand.Read, 6, 0, 512);
        Assert.Equal(0u, await c.ReadStructuredReadAsync(6, 0, new byte[512]));
    }

    [Fact]
    public async Task A_client_that_stops_reading_replies_is_disconnected_with_memory_bounded_and_others_unaffected()
    {
        const long budget = 40L << 20;
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, MaxBytesInFlight = budget, MaxRequestsInFlight = 16, ReplyStallTimeout = TimeSpan.FromSeconds(2) },
            ("disk", Size));
        await using var hog = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        hog.Socket.ReceiveBufferSize = 4096;
        await hog.NegotiateAsync("disk");
        // 200 MiB of reads requested, none of the replies read. Sending may block once the server stops reading.
        var sender = Task.Run(async () =>
        {
            try
            {
                for (ulong i = 0; i < 200; i++)
                {
                    // DF: the reply carries the data even over a hole (without it, holes are 32-byte replies).
                    await hog.SendRequestAsync(NbdCommand.Read, i, 0, 1 << 20, CommandFlags.Df);
                }
            }
            catch (IOException)
            {
            }
        });
        // Meanwhile another client is served normally.
        await AssertHealthyAsync(s);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (s.Server.ActiveConnections > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        Assert.True(s.Server.ActiveConnections == 0, $"still {s.Server.ActiveConnections} connections; log:\n{Tools.Describe(s.Log)}");
        Assert.Contains(s.Log, l => l.Contains("has not read its replies", StringComparison.Ordinal));
        Assert.InRange(s.Server.HighWaterBytesInFlight, 1, budget);
        await sender.WaitAsync(TimeSpan.FromSeconds(30));
        await AssertHealthyAsync(s);
    }

    [Fact]
    public async Task A_client_that_never_negotiates_is_dropped_after_the_handshake_timeout()
    {
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, HandshakeTimeout = TimeSpan.FromSeconds(1) }, ("disk", Size));
        await using var idle = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await idle.ReadExactlyAsync(18);
        Assert.True(await idle.IsClosedByServerAsync(TimeSpan.FromSeconds(15)));
    }

    [Fact]
    public async Task Export_name_for_an_unknown_export_ends_the_session()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.HandshakeAsync();
        await c.SendOptionAsync((uint)NbdOption.ExportName, "../../etc/passwd"u8.ToArray());
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Tls_required_refuses_everything_before_starttls_then_serves_over_tls()
    {
        using var key = RSA.Create(2048);
        var req = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, TlsCertificate = cert, TlsRequired = true }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectTcpAsync(s.Tcp);
        await c.HandshakeAsync();
        foreach (var option in new[] { NbdOption.List, NbdOption.Info, NbdOption.Go, NbdOption.StructuredReply, (NbdOption)999 })
        {
            await c.SendOptionAsync((uint)option, option is NbdOption.Info or NbdOption.Go ? RawNbdClient.InfoPayload("disk") : []);
            Assert.Equal(OptionReplyType.ErrTlsReqd, (await c.ReadOptionReplyAsync()).Type);
        }
        await c.SendOptionAsync((uint)NbdOption.StartTls, []);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        var ssl = new SslStream(c.Stream, leaveInnerStreamOpen: false, (_, _, _, _) => true);
        await ssl.AuthenticateAsClientAsync("localhost");
        c.Stream = ssl;
        // A second STARTTLS is invalid; everything else now works, over TLS.
        await c.SendOptionAsync((uint)NbdOption.StartTls, []);
        Assert.Equal(OptionReplyType.ErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("disk"));
        Assert.Equal(OptionReplyType.Info, (await c.ReadOptionReplyAsync()).Type);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        var data = RandomNumberGenerator.GetBytes(100_000);
        await c.SendRequestAsync(NbdCommand.Write, 1, 777, (uint)data.Length, payload: data);
        Assert.Equal(0u, (await c.ReadReplyAsync()).ErrorValue);
        await c.SendRequestAsync(NbdCommand.Read, 2, 777, (uint)data.Length);
        var back = new byte[data.Length];
        Assert.Equal(0u, await c.ReadStructuredReadAsync(2, 777, back));
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Export_name_before_starttls_on_a_tls_required_server_ends_the_session()
    {
        using var key = ECDsa.Create();
        var req = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, TlsCertificate = cert, TlsRequired = true }, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.HandshakeAsync();
        await c.SendOptionAsync((uint)NbdOption.ExportName, "disk"u8.ToArray());
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Meta_context_listing_and_block_status_follow_the_spec()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        var path = Path.Combine(s.ImageDir, "disk");
        await using (var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            f.Position = 1 << 20;
            f.Write(new byte[1 << 20].Select(_ => (byte)1).ToArray());
        }
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.HandshakeAsync();
        await c.SendOptionAsync((uint)NbdOption.StructuredReply, []);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        foreach (var queries in new[] { Array.Empty<string>(), ["base:"], ["base:allocation", "qemu:dirty-bitmap:x"] })
        {
            await c.SendOptionAsync((uint)NbdOption.ListMetaContext, RawNbdClient.MetaPayload("disk", queries));
            var r = await c.ReadOptionReplyAsync();
            Assert.Equal(OptionReplyType.MetaContext, r.Type);
            Assert.Equal("base:allocation", System.Text.Encoding.UTF8.GetString(r.Data.AsSpan(4)));
            Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        }
        await c.SendOptionAsync((uint)NbdOption.ListMetaContext, RawNbdClient.MetaPayload("disk", "x-other:thing"));
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.SetMetaContext, RawNbdClient.MetaPayload("disk", "base:allocation"));
        var ctx = await c.ReadOptionReplyAsync();
        Assert.Equal(OptionReplyType.MetaContext, ctx.Type);
        var id = BinaryPrimitives.ReadUInt32BigEndian(ctx.Data);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
        await c.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("disk"));
        while ((await c.ReadOptionReplyAsync()).Type != OptionReplyType.Ack)
        {
        }
        await c.SendRequestAsync(NbdCommand.BlockStatus, 3, 0, 4u << 20);
        var st = await c.ReadReplyAsync();
        Assert.Equal(ReplyChunkType.BlockStatus, st.Type);
        Assert.True(st.Done);
        Assert.Equal(id, BinaryPrimitives.ReadUInt32BigEndian(st.Payload));
        var extents = Enumerable.Range(0, (st.Payload.Length - 4) / 8)
            .Select(i => (BinaryPrimitives.ReadUInt32BigEndian(st.Payload.AsSpan(4 + (8 * i))), BinaryPrimitives.ReadUInt32BigEndian(st.Payload.AsSpan(8 + (8 * i)))))
            .ToList();
        Assert.Equal([(1u << 20, 3u), (1u << 20, 0u), (2u << 20, 3u)], extents);
        // REQ_ONE: exactly one extent, not longer than asked.
        await c.SendRequestAsync(NbdCommand.BlockStatus, 4, 512, 4096, CommandFlags.ReqOne);
        st = await c.ReadReplyAsync();
        Assert.Equal(12, st.Payload.Length);
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(st.Payload.AsSpan(4)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(st.Payload.AsSpan(8)));
        // A long read over the hole and the data comes back as hole and data chunks that reassemble exactly.
        await c.SendRequestAsync(NbdCommand.Read, 5, 0, 3u << 20);
        var kinds = new List<ReplyChunkType>();
        var whole = new byte[3 << 20];
        while (true)
        {
            var r = await c.ReadReplyAsync();
            kinds.Add(r.Type!.Value);
            if (r.Type == ReplyChunkType.OffsetData)
            {
                r.Payload.AsSpan(8).CopyTo(whole.AsSpan((int)BinaryPrimitives.ReadUInt64BigEndian(r.Payload)));
            }
            if (r.Done)
            {
                break;
            }
        }
        Assert.Equal([ReplyChunkType.OffsetHole, ReplyChunkType.OffsetData, ReplyChunkType.OffsetHole], kinds);
        Assert.All(whole.AsSpan(0, 1 << 20).ToArray(), b => Assert.Equal(0, b));
        Assert.All(whole.AsSpan(1 << 20, 1 << 20).ToArray(), b => Assert.Equal(1, b));
        // With DF, one data chunk with the zeroes spelled out.
        await c.SendRequestAsync(NbdCommand.Read, 6, 0, 3u << 20, CommandFlags.Df);
        var df = await c.ReadReplyAsync();
        Assert.Equal(ReplyChunkType.OffsetData, df.Type);
        Assert.True(df.Done);
        Assert.Equal((3 << 20) + 8, df.Payload.Length);
    }

    [Fact]
    public async Task An_export_that_cannot_be_opened_is_refused_politely_and_negotiation_goes_on()
    {
        await using var s = await TestServer.StartAsync(null, ("disk", Size));
        await using var c = await RawNbdClient.ConnectUnixAsync(s.UnixPath);
        await c.HandshakeAsync();
        // `image rm` / `image resize` hold an exclusive lock while they work: the server cannot open the image then.
        using (var exclusive = File.OpenHandle(Path.Combine(s.ImageDir, "disk"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            await c.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("disk"));
            var refused = await c.ReadOptionReplyAsync();
            Assert.Equal(OptionReplyType.ErrPolicy, refused.Type);
        }
        await c.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoPayload("disk"));
        Assert.Equal(OptionReplyType.Info, (await c.ReadOptionReplyAsync()).Type);
        Assert.Equal(OptionReplyType.Ack, (await c.ReadOptionReplyAsync()).Type);
    }
}

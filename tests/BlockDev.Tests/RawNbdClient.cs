using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Appliance.BlockDev.Nbd.Protocol;

namespace Appliance.BlockDev.Tests;

/// <summary>
/// A deliberately low-level NBD client for tests: it sends exactly the bytes a test asks for (including wrong ones)
/// and reads the server's answers field by field. Written from the spec, independent of the server's code paths.
/// </summary>
public sealed class RawNbdClient : IAsyncDisposable
{
    private readonly Socket _socket;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        Stream = new NetworkStream(socket, ownsSocket: true);
    }

    public Stream Stream { get; set; }

    public Socket Socket => _socket;

    public static async Task<RawNbdClient> ConnectUnixAsync(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawNbdClient(s);
    }

    public static async Task<RawNbdClient> ConnectTcpAsync(IPEndPoint ep)
    {
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(ep);
        return new RawNbdClient(s);
    }

    /// <summary>Reads the greeting, checks it, answers with FIXED_NEWSTYLE | NO_ZEROES.</summary>
    public async Task<ushort> HandshakeAsync(uint clientFlags = 3)
    {
        var g = await ReadExactlyAsync(18);
        Assert.Equal(NbdMagic.NbdMagicValue, BinaryPrimitives.ReadUInt64BigEndian(g));
        Assert.Equal(NbdMagic.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(g.AsSpan(8)));
        var flags = BinaryPrimitives.ReadUInt16BigEndian(g.AsSpan(16));
        var c = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(c, clientFlags);
        await Stream.WriteAsync(c);
        return flags;
    }

    public async Task SendOptionAsync(uint option, byte[] data, ulong magic = NbdMagic.IHaveOpt)
    {
        var b = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(b, magic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), (uint)data.Length);
        data.CopyTo(b, 16);
        await Stream.WriteAsync(b);
    }

    public sealed record OptionReply(uint Option, OptionReplyType Type, byte[] Data);

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var h = await ReadExactlyAsync(20);
        Assert.Equal(NbdMagic.OptionReply, BinaryPrimitives.ReadUInt64BigEndian(h));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        Assert.True(length < 1 << 20, $"option reply of {length} bytes");
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), (OptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), await ReadExactlyAsync((int)length));
    }

    public static byte[] InfoPayload(string name, params InfoType[] items)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var b = new byte[4 + n.Length + 2 + (2 * items.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)n.Length);
        n.CopyTo(b, 4);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4 + n.Length), (ushort)items.Length);
        for (var i = 0; i < items.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6 + n.Length + (2 * i)), (ushort)items[i]);
        }
        return b;
    }

    public static byte[] MetaPayload(string name, params string[] queries)
    {
        var ms = new MemoryStream();
        var w = new byte[4];
        void U32(uint v)
        {
            BinaryPrimitives.WriteUInt32BigEndian(w, v);
            ms.Write(w);
        }
        var n = Encoding.UTF8.GetBytes(name);
        U32((uint)n.Length);
        ms.Write(n);
        U32((uint)queries.Length);
        foreach (var q in queries)
        {
            var qb = Encoding.UTF8.GetBytes(q);
            U32((uint)qb.Length);
            ms.Write(qb);
        }
        return ms.ToArray();
    }

    /// <summary>Full negotiation to transmission: optional structured replies and base:allocation, then GO.</summary>
    public async Task<(long Size, TransmissionFlags Flags)> NegotiateAsync(string export, bool structured = true, bool allocation = true)
    {
        await HandshakeAsync();
        if (structured)
        {
            await SendOptionAsync((uint)NbdOption.StructuredReply, []);
            Assert.Equal(OptionReplyType.Ack, (await ReadOptionReplyAsync()).Type);
            if (allocation)
            {
                await SendOptionAsync((uint)NbdOption.SetMetaContext, MetaPayload(export, NbdLimits.BaseAllocation));
                var ctx = await ReadOptionReplyAsync();
                Assert.Equal(OptionReplyType.MetaContext, ctx.Type);
                Assert.Equal(OptionReplyType.Ack, (await ReadOptionReplyAsync()).Type);
            }
        }
        await SendOptionAsync((uint)NbdOption.Go, InfoPayload(export, InfoType.BlockSize));
        long size = -1;
        TransmissionFlags flags = 0;
        while (true)
        {
            var r = await ReadOptionReplyAsync();
            if (r.Type == OptionReplyType.Ack)
            {
                break;
            }
            Assert.Equal(OptionReplyType.Info, r.Type);
            if (BinaryPrimitives.ReadUInt16BigEndian(r.Data) == (ushort)InfoType.Export)
            {
                size = (long)BinaryPrimitives.ReadUInt64BigEndian(r.Data.AsSpan(2));
                flags = (TransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(r.Data.AsSpan(10));
            }
        }
        Assert.True(size >= 0, "GO succeeded without NBD_INFO_EXPORT");
        return (size, flags);
    }

    public static byte[] Request(NbdCommand command, ulong cookie, ulong offset, uint length, CommandFlags flags = 0, uint magic = NbdMagic.Request)
    {
        var b = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), (ushort)command);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), length);
        return b;
    }

    public async Task SendRequestAsync(NbdCommand command, ulong cookie, ulong offset, uint length, CommandFlags flags = 0, byte[]? payload = null)
    {
        await Stream.WriteAsync(Request(command, cookie, offset, length, flags));
        if (payload is not null)
        {
            await Stream.WriteAsync(payload);
        }
    }

    /// <summary>One reply message: a simple reply (Type = null) or one structured chunk.</summary>
    public sealed record Reply(ulong Cookie, uint Error, ReplyChunkType? Type, ReplyFlags Flags, byte[] Payload)
    {
        public bool Done => Type is null || (Flags & ReplyFlags.Done) != 0;

        /// <summary>The error of an error chunk or simple reply.</summary>
        public uint ErrorValue => Type is { } t && ((ushort)t & 0x8000) != 0 ? BinaryPrimitives.ReadUInt32BigEndian(Payload) : Error;
    }

    /// <summary>Reads one reply message. For a simple reply the caller says how much data follows on success.</summary>
    public async Task<Reply> ReadReplyAsync(Func<ulong, int>? simpleDataLength = null)
    {
        var m = await ReadExactlyAsync(4);
        var magic = BinaryPrimitives.ReadUInt32BigEndian(m);
        if (magic == NbdMagic.SimpleReply)
        {
            var rest = await ReadExactlyAsync(12);
            var error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4));
            var data = error == 0 && simpleDataLength is not null ? await ReadExactlyAsync(simpleDataLength(cookie)) : [];
            return new Reply(cookie, error, null, ReplyFlags.Done, data);
        }
        Assert.Equal(NbdMagic.StructuredReply, magic);
        var h = await ReadExactlyAsync(16);
        var flags = (ReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(h);
        var type = (ReplyChunkType)BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(2));
        var c = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(4));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
        Assert.True(length <= (64 << 20), $"chunk of {length} bytes");
        return new Reply(c, 0, type, flags, await ReadExactlyAsync((int)length));
    }

    /// <summary>Reads a whole structured READ reply into a buffer (holes as zeroes); returns the error value (0 = ok).</summary>
    public async Task<uint> ReadStructuredReadAsync(ulong cookie, ulong offset, byte[] into)
    {
        uint error = 0;
        while (true)
        {
            var r = await ReadReplyAsync();
            Assert.Equal(cookie, r.Cookie);
            switch (r.Type)
            {
                case ReplyChunkType.OffsetData:
                    var o = BinaryPrimitives.ReadUInt64BigEndian(r.Payload);
                    r.Payload.AsSpan(8).CopyTo(into.AsSpan((int)(o - offset)));
                    break;
                case ReplyChunkType.OffsetHole:
                    var ho = BinaryPrimitives.ReadUInt64BigEndian(r.Payload);
                    var hl = BinaryPrimitives.ReadUInt32BigEndian(r.Payload.AsSpan(8));
                    into.AsSpan((int)(ho - offset), (int)hl).Clear();
                    break;
                case ReplyChunkType.None:
                    break;
                default:
                    error = r.ErrorValue;
                    break;
            }
            if (r.Done)
            {
                return error;
            }
        }
    }

    public async Task<byte[]> ReadExactlyAsync(int n)
    {
        var b = new byte[n];
        await Stream.ReadExactlyAsync(b).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        return b;
    }

    /// <summary>True when the server closes the connection within the timeout (reads see end of stream or a reset).</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan timeout)
    {
        var buffer = new byte[64 << 10];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                if (await Stream.ReadAsync(buffer, cts.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public async ValueTask DisposeAsync() => await Stream.DisposeAsync();
}

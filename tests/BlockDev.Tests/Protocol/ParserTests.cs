using System.Buffers;
using System.Buffers.Binary;
using Appliance.BlockDev.Nbd.Protocol;

namespace Appliance.BlockDev.Tests.Protocol;

/// <summary>The pure parsers and writers: known vectors, every truncation, random garbage.</summary>
public sealed class ParserTests(ITestOutputHelper output)
{
    private static ReadOnlySequence<byte> Split(byte[] bytes, int at)
    {
        // A two-segment sequence, so parsers are exercised across segment boundaries.
        if (at <= 0 || at >= bytes.Length)
        {
            return new ReadOnlySequence<byte>(bytes);
        }
        var first = new Segment(bytes.AsMemory(0, at), 0);
        var last = first.Append(bytes.AsMemory(at));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long index)
        {
            Memory = memory;
            RunningIndex = index;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    [Fact]
    public void A_request_header_parses_from_any_split_and_needs_all_28_bytes()
    {
        var bytes = RawNbdClient.Request(NbdCommand.WriteZeroes, 0x0102030405060708, 0x1122334455667788, 0xA0B0C0D0, CommandFlags.NoHole | CommandFlags.Fua);
        for (var split = 0; split <= bytes.Length; split++)
        {
            Assert.Equal(OperationStatus.Done, RequestParser.Parse(Split(bytes, split), out var r, out var consumed));
            Assert.Equal(28, consumed);
            Assert.Equal(new NbdRequest(CommandFlags.NoHole | CommandFlags.Fua, NbdCommand.WriteZeroes, 0x0102030405060708, 0x1122334455667788, 0xA0B0C0D0), r);
        }
        for (var n = 0; n < 28; n++)
        {
            Assert.Equal(OperationStatus.NeedMoreData, RequestParser.Parse(new ReadOnlySequence<byte>(bytes, 0, n), out _, out var consumed));
            Assert.Equal(0, consumed);
        }
        bytes[0] ^= 1;
        Assert.Equal(OperationStatus.InvalidData, RequestParser.Parse(new ReadOnlySequence<byte>(bytes), out _, out _));
    }

    [Fact]
    public void Option_header_and_client_flags_parse_and_reject_bad_input()
    {
        var o = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(o, NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8), 7);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(12), 99);
        for (var split = 0; split <= 16; split++)
        {
            Assert.Equal(OperationStatus.Done, HandshakeParser.ParseOptionHeader(Split(o, split), out var h, out var consumed));
            Assert.Equal((NbdOption.Go, 99u, 16), (h.Option, h.Length, consumed));
        }
        Assert.Equal(OperationStatus.NeedMoreData, HandshakeParser.ParseOptionHeader(new ReadOnlySequence<byte>(o, 0, 15), out _, out _));
        o[3] = 0;
        Assert.Equal(OperationStatus.InvalidData, HandshakeParser.ParseOptionHeader(new ReadOnlySequence<byte>(o), out _, out _));

        Assert.Equal(OperationStatus.Done, HandshakeParser.ParseClientFlags(new ReadOnlySequence<byte>([0, 0, 0, 3]), out var f, out _));
        Assert.Equal(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes, f);
        Assert.Equal(OperationStatus.InvalidData, HandshakeParser.ParseClientFlags(new ReadOnlySequence<byte>([0, 0, 0, 4]), out _, out _));
        Assert.Equal(OperationStatus.NeedMoreData, HandshakeParser.ParseClientFlags(new ReadOnlySequence<byte>([0, 0, 0]), out _, out _));
    }

    [Fact]
    public void Info_and_meta_context_payloads_parse_and_every_truncation_is_rejected()
    {
        var info = RawNbdClient.InfoPayload("pool/img", InfoType.BlockSize, InfoType.Name);
        var parsed = HandshakeParser.ParseInfoRequest(info);
        Assert.NotNull(parsed);
        Assert.Equal("pool/img", parsed.ExportName);
        Assert.Equal([InfoType.BlockSize, InfoType.Name], parsed.Items);
        var meta = RawNbdClient.MetaPayload("pool/img", "base:allocation", "qemu:dirty-bitmap:a");
        var m = HandshakeParser.ParseMetaContextRequest(meta);
        Assert.NotNull(m);
        Assert.Equal(["base:allocation", "qemu:dirty-bitmap:a"], m.Queries);
        for (var n = 0; n < info.Length; n++)
        {
            Assert.Null(HandshakeParser.ParseInfoRequest(info.AsSpan(0, n)));
        }
        for (var n = 0; n < meta.Length; n++)
        {
            Assert.Null(HandshakeParser.ParseMetaContextRequest(meta.AsSpan(0, n)));
        }
        // Trailing garbage, a NUL in a name, invalid UTF-8, and a count that cannot fit are malformed too.
        Assert.Null(HandshakeParser.ParseInfoRequest([.. info, 0]));
        Assert.Null(HandshakeParser.ParseMetaContextRequest([.. meta, 0]));
        Assert.Null(HandshakeParser.ParseInfoRequest(RawNbdClient.InfoPayload("a\0b")));
        Assert.Null(HandshakeParser.ParseExportName([0xff, 0xfe]));
        var huge = RawNbdClient.MetaPayload("x");
        BinaryPrimitives.WriteUInt32BigEndian(huge.AsSpan(5), uint.MaxValue);
        Assert.Null(HandshakeParser.ParseMetaContextRequest(huge));
        Assert.Null(HandshakeParser.ParseExportName(new byte[4097]));
    }

    [Fact]
    public void Random_bytes_never_crash_the_parsers_and_consumption_is_all_or_nothing()
    {
        var seed = Tools.Seed(output);
        var random = new Random(seed);
        for (var i = 0; i < 20000; i++)
        {
            var b = new byte[random.Next(0, 64)];
            random.NextBytes(b);
            if (b.Length >= 4 && random.Next(2) == 0)
            {
                BinaryPrimitives.WriteUInt32BigEndian(b, NbdMagic.Request);
            }
            var status = RequestParser.Parse(Split(b, random.Next(b.Length + 1)), out var r, out var consumed);
            Assert.Equal(status == OperationStatus.Done ? 28 : 0, consumed);
            if (status == OperationStatus.Done)
            {
                // Validation is total: every request gets an answer, never an exception.
                _ = RequestParser.Validate(r, new TransmissionState(random.NextInt64(0, 1L << 40), (TransmissionFlags)random.Next(1 << 12), random.Next(2) == 0, random.Next(2) == 0));
            }
            HandshakeParser.ParseOptionHeader(Split(b, random.Next(b.Length + 1)), out _, out consumed);
            Assert.True(consumed is 0 or 16);
            _ = HandshakeParser.ParseInfoRequest(b);
            _ = HandshakeParser.ParseMetaContextRequest(b);
            _ = HandshakeParser.ParseExportName(b);
        }
    }

    [Fact]
    public void Validation_follows_the_spec_error_table()
    {
        var rw = new TransmissionState(1 << 20, TransmissionFlags.HasFlags, StructuredReplies: true, MetaContextSelected: true);
        var ro = rw with { Flags = TransmissionFlags.HasFlags | TransmissionFlags.ReadOnly };
        var simple = rw with { StructuredReplies = false, MetaContextSelected = false };
        NbdError V(NbdCommand c, ulong off, uint len, CommandFlags f = 0, TransmissionState? s = null) => RequestParser.Validate(new NbdRequest(f, c, 1, off, len), s ?? rw);
        Assert.Equal(NbdError.None, V(NbdCommand.Read, 0, 1 << 20));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Read, 1, 1 << 20));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Read, ulong.MaxValue, 1));
        Assert.Equal(NbdError.NoSpc, V(NbdCommand.Write, (1 << 20) - 1, 2));
        Assert.Equal(NbdError.NoSpc, V(NbdCommand.WriteZeroes, ulong.MaxValue - 1, 4));
        Assert.Equal(NbdError.Perm, V(NbdCommand.Write, 0, 1, s: ro));
        Assert.Equal(NbdError.Perm, V(NbdCommand.Trim, 0, 1, s: ro));
        Assert.Equal(NbdError.None, V(NbdCommand.Read, 0, 1, s: ro));
        Assert.Equal(NbdError.Overflow, V(NbdCommand.Read, 0, (32u << 20) + 1));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Read, 0, (32u << 20) + 1, s: simple));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Write, 0, (32u << 20) + 1));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Read, 0, 1, CommandFlags.Df, simple));
        Assert.Equal(NbdError.None, V(NbdCommand.Read, 0, 1, CommandFlags.Df));
        Assert.Equal(NbdError.Inval, V(NbdCommand.BlockStatus, 0, 1, s: simple));
        Assert.Equal(NbdError.Inval, V(NbdCommand.BlockStatus, 0, 0));
        Assert.Equal(NbdError.None, V(NbdCommand.BlockStatus, 0, 1, CommandFlags.ReqOne));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Trim, 0, 1, CommandFlags.NoHole));
        Assert.Equal(NbdError.None, V(NbdCommand.WriteZeroes, 0, 1, CommandFlags.NoHole | CommandFlags.FastZero | CommandFlags.Fua));
        Assert.Equal(NbdError.Inval, V(NbdCommand.Flush, 0, 1));
        Assert.Equal(NbdError.None, V(NbdCommand.Flush, 0, 0, CommandFlags.Fua));
        Assert.Equal(NbdError.Inval, V((NbdCommand)8, 0, 0));
        Assert.Equal(NbdError.None, V(NbdCommand.Trim, 0, uint.MaxValue, s: rw with { ExportSize = 1L << 40 }));
    }

    [Fact]
    public void Writers_produce_the_spec_layouts()
    {
        var b = new byte[64];
        Assert.Equal(18, NbdWire.WriteGreeting(b, HandshakeFlags.FixedNewstyle | HandshakeFlags.NoZeroes));
        Assert.Equal("NBDMAGICIHAVEOPT"u8.ToArray(), b[..16]);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(16)));
        Assert.Equal(134, NbdWire.ExportNameReply(1, TransmissionFlags.HasFlags, noZeroes: false).Length);
        Assert.Equal(10, NbdWire.ExportNameReply(1, TransmissionFlags.HasFlags, noZeroes: true).Length);
        var e = new byte[100];
        var n = NbdWire.WriteErrorChunk(e, 77, NbdError.Io, "oops"u8, 4096);
        Assert.Equal(20 + 6 + 4 + 8, n);
        Assert.Equal((ushort)ReplyChunkType.ErrorOffset, BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(6)));
        Assert.Equal((uint)(6 + 4 + 8), BinaryPrimitives.ReadUInt32BigEndian(e.AsSpan(16)));
        Assert.Equal(5u, BinaryPrimitives.ReadUInt32BigEndian(e.AsSpan(20)));
        Assert.Equal(4096ul, BinaryPrimitives.ReadUInt64BigEndian(e.AsSpan(30)));
        var info = NbdWire.InfoBlockSize(NbdOption.Go, 1, 4096, 32 << 20);
        Assert.Equal(20 + 14, info.Length);
        Assert.Equal(NbdLimits.MaxString, NbdWire.Utf8Truncated(new string('é', 3000)).Length);
    }
}

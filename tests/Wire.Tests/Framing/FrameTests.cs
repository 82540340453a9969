using System.Buffers;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Tests.Framing;

public sealed class FrameTests
{
    private const int Max = 1 << 20;

    private static byte[] Frame(ulong seq, byte[] payload, ushort type = 7)
    {
        using var w = new WireWriter();
        FrameParser.Write(w, new FrameHeader(type, 0, seq, seq - 1, 0, payload.Length), payload);
        return w.ToArray();
    }

    /// <summary>Splits bytes into a multi-segment sequence, as a socket delivers them.</summary>
    private static ReadOnlySequence<byte> Segments(byte[] data, int pieces, Random random)
    {
        var cuts = Enumerable.Range(0, pieces - 1).Select(_ => random.Next(data.Length + 1)).Order().ToArray();
        Segment? first = null, last = null;
        var start = 0;
        foreach (var cut in cuts.Append(data.Length))
        {
            var seg = new Segment(data.AsMemory(start, cut - start));
            if (first is null)
            {
                first = last = seg;
            }
            else
            {
                last = last!.Append(seg);
            }
            start = cut;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory) => Append(new Segment(memory));

        public Segment Append(Segment next)
        {
            next.RunningIndex = RunningIndex + Memory.Length;
            Next = next;
            return next;
        }
    }

    [Fact]
    public void Frames_round_trip_whole_and_split_across_segments()
    {
        var random = new Random(Seeds.Get());
        for (var i = 0; i < 500; i++)
        {
            var payload = new byte[random.Next(0, 5000)];
            random.NextBytes(payload);
            var bytes = Frame((ulong)i + 1, payload);
            var input = Segments(bytes, random.Next(1, 6), random);
            Assert.Equal(FrameStatus.Complete, FrameParser.TryParse(input, Max, out var header, out var body, out var consumed, out var error));
            Assert.Null(error);
            Assert.Equal((ulong)i + 1, header.Seq);
            Assert.Equal(payload, body.ToArray());
            Assert.Equal(bytes.Length, input.Slice(0, consumed).Length);
        }
    }

    [Fact]
    public void Every_truncation_asks_for_more_and_never_yields_a_frame()
    {
        var bytes = Frame(1, new byte[300]);
        for (var n = 0; n < bytes.Length; n++)
        {
            var status = FrameParser.TryParse(new ReadOnlySequence<byte>(bytes, 0, n), Max, out _, out _, out _, out _);
            Assert.Equal(FrameStatus.NeedMore, status);
        }
    }

    [Fact]
    public void Every_single_bit_flip_is_caught()
    {
        var bytes = Frame(9, Enumerable.Range(0, 200).Select(i => (byte)i).ToArray());
        for (var bit = 0; bit < bytes.Length * 8; bit++)
        {
            var copy = (byte[])bytes.Clone();
            copy[bit >> 3] ^= (byte)(1 << (bit & 7));
            var status = FrameParser.TryParse(new ReadOnlySequence<byte>(copy), Max, out _, out _, out _, out var error);
            // A flip in the length field may make the frame look longer than the bytes we have: NeedMore is then
            // the honest answer (the header crc catches it as soon as 40 bytes are there, which they are here).
            Assert.True(status == FrameStatus.Invalid, $"bit {bit}: {status} {error}");
        }
    }

    [Fact]
    public void An_oversized_payload_is_refused_from_the_header_alone()
    {
        using var w = new WireWriter();
        new FrameHeader(1, 0, 1, 0, 0, 64 << 20).Write(w.GetSpan(FrameHeader.Size));
        w.Advance(FrameHeader.Size);
        var status = FrameParser.TryParse(new ReadOnlySequence<byte>(w.ToArray()), Max, out _, out _, out _, out var error);
        Assert.Equal(FrameStatus.Invalid, status);
        Assert.Contains("exceeds the limit", error);
    }

    [Fact]
    public void Garbage_is_refused_early_and_random_bytes_never_throw()
    {
        Assert.Equal(FrameStatus.Invalid, FrameParser.TryParse(new ReadOnlySequence<byte>("GET / HTTP/1.1\r\n"u8.ToArray()), Max, out _, out _, out _, out _));
        var random = new Random(Seeds.Get());
        var iterations = Seeds.Soak ? 2_000_000 : 50_000;
        for (var i = 0; i < iterations; i++)
        {
            var bytes = new byte[random.Next(0, 100)];
            random.NextBytes(bytes);
            if (random.Next(2) == 0 && bytes.Length >= 4)
            {
                BitConverter.GetBytes(FrameHeader.Magic).CopyTo(bytes, 0);
            }
            var status = FrameParser.TryParse(new ReadOnlySequence<byte>(bytes), Max, out _, out _, out _, out _);
            Assert.NotEqual(FrameStatus.Complete, status); // a random header cannot carry a valid crc by chance here
        }
    }
}

public sealed class OutgoingFrameTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_frame_is_a_valid_crc_frame_whether_its_crc_was_computed_while_copying_or_when_first_sent(bool checksum)
    {
        foreach (var size in new[] { 0, 1, 4096, (128 << 10) + 7, 1 << 20 })
        {
            var payload = new byte[size];
            new Random(size).NextBytes(payload);
            var frame = new Appliance.Wire.Messenger.OutgoingFrame(300, 5, payload.AsSpan(), checksum) { Seq = 9 };
            var bytes = Whole(frame.PrepareCrc(ack: 3));
            var status = FrameParser.TryParse(new System.Buffers.ReadOnlySequence<byte>(bytes), 2 << 20, out var header, out var parsed, out _, out var error);
            Assert.True(status == FrameStatus.Complete, error);
            Assert.Equal((300, 9ul, 3ul, 5ul), (header.Type, header.Seq, header.Ack, header.ReplyTo));
            Assert.Equal(payload, parsed.ToArray());
            // A second send (a resend after a reconnect) carries the same checksum with the new ack.
            var again = Whole(frame.PrepareCrc(ack: 4));
            Assert.Equal(FrameStatus.Complete, FrameParser.TryParse(new System.Buffers.ReadOnlySequence<byte>(again), 2 << 20, out header, out _, out _, out _));
            Assert.Equal(4ul, header.Ack);
            frame.Release();
        }
    }

    private static byte[] Whole((ReadOnlyMemory<byte> Head, ReadOnlyMemory<byte> Payload, ReadOnlyMemory<byte> Trailer) pieces) =>
        [.. pieces.Head.Span, .. pieces.Payload.Span, .. pieces.Trailer.Span];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_handed_over_payload_makes_the_same_frame_bytes_as_a_copied_one(bool checksum)
    {
        foreach (var size in new[] { 0, 5, 64 << 10, (1 << 20) + 3 })
        {
            var payload = new byte[size];
            new Random(size).NextBytes(payload);
            var copied = new Appliance.Wire.Messenger.OutgoingFrame(301, 6, payload.AsSpan(), checksum) { Seq = 10 };
            var handedOver = new Appliance.Wire.Messenger.OutgoingFrame(301, 6, payload.AsMemory(), checksum) { Seq = 10 };
            Assert.Equal(Whole(copied.PrepareCrc(ack: 2)), Whole(handedOver.PrepareCrc(ack: 2)));
            var pieces = handedOver.PrepareCrc(ack: 7);
            Assert.Equal(FrameHeader.Size, pieces.Head.Length);
            Assert.True(pieces.Payload.Span == payload.AsSpan() || size == 0, "the payload is sent from where the caller had it");
            var (head, rest) = handedOver.PrepareSecure(ack: 7);
            var (whole, none) = copied.PrepareSecure(ack: 7);
            Assert.True(none.IsEmpty);
            Assert.Equal(whole.ToArray(), (byte[])[.. head.Span, .. rest.Span]);
            copied.Release();
            handedOver.Release();
        }
    }
}

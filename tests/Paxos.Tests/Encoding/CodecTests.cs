using Appliance.Paxos.Core;
using Appliance.Paxos.Encoding;

namespace Appliance.Paxos.Tests.Encoding;

public sealed class CodecTests
{
    private static readonly Ballot B = new(7, 3);

    private static readonly AcceptedEntry[] Entries =
    [
        new(1, B, LogValue.Noop),
        new(2, B, LogValue.OfCommands([new ClientCommand(1, 2, [1, 2, 3]), new ClientCommand(-4, 5, [])])),
        new(3, new Ballot(1, 1), LogValue.OfConfig(new MemberSet([1, 2, 5]))),
        new(4, new Ballot(1, 1), LogValue.OfConfig(new MemberSet([1, 2]), 77, 9)),
    ];

    public static TheoryData<PaxosMessage> Messages() =>
    [
        new Prepare(B, 9),
        new Promise(B, 4, 2, Entries),
        new Nack(B, new Ballot(8, 1)),
        new Accept(B, 3, Entries),
        new Accept(B, 3, []),
        new Accepted(B, [1, 2, 3], 1),
        new Heartbeat(B, 11, 3),
        new HeartbeatAck(B, 11, 2),
        new CatchUpRequest(5),
        new CatchUp(9, new SnapshotData(6, new MemberSet([1, 2, 3]), [9, 8, 7]), Entries),
        new CatchUp(9, null, Entries),
        new Forward(new ClientCommand(3, 4, [5])),
        new ForwardConfig(new MemberSet([4, 2])),
        new ForwardConfig(new MemberSet([4, 2]), 12, 34),
        new Handoff(B, 17, 2),
        new SnapshotChunk(40, 99, new MemberSet([1, 2, 3]), 100, 64, [1, 2, 3, 4]),
        new SnapshotChunkRequest(40, 99, 68),
    ];

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_message_round_trips_and_every_truncation_is_refused(PaxosMessage message)
    {
        var bytes = PaxosCodec.Encode(message);
        Assert.Equal(PaxosCodec.Version, bytes[0]);
        var decoded = PaxosCodec.Decode(bytes, out var consumed);
        Assert.Equal(bytes.Length, consumed);
        Assert.Equal(bytes, PaxosCodec.Encode(decoded)); // records with lists compare by reference: compare encodings
        Assert.Equal(message.GetType(), decoded.GetType());

        for (var n = 0; n < bytes.Length; n++)
        {
            var prefix = bytes[..n];
            Assert.Throws<PaxosFormatException>(() => PaxosCodec.Decode(prefix, out _));
        }
    }

    [Fact]
    public void Decoded_values_are_equal_to_the_originals()
    {
        var decoded = (Promise)PaxosCodec.Decode(PaxosCodec.Encode(new Promise(B, 4, 2, Entries)), out _);
        Assert.Equal(Entries, decoded.Entries);
        foreach (var e in Entries)
        {
            Assert.Equal(e.Value, PaxosCodec.DecodeValue(PaxosCodec.EncodeValue(e.Value)));
        }
    }

    [Fact]
    public void Another_version_an_unknown_type_and_a_forged_count_are_refused()
    {
        var bytes = PaxosCodec.Encode(new Accept(B, 3, Entries));
        var other = (byte[])bytes.Clone();
        other[0] = 2;
        Assert.Contains("version", Assert.Throws<PaxosFormatException>(() => PaxosCodec.Decode(other, out _)).Message, StringComparison.Ordinal);
        other = (byte[])bytes.Clone();
        other[1] = 200;
        Assert.Throws<PaxosFormatException>(() => PaxosCodec.Decode(other, out _));

        // Accept = version, type, ballot (12), commit (8), then the entry count: claim two billion entries.
        other = (byte[])bytes.Clone();
        BitConverter.TryWriteBytes(other.AsSpan(22), int.MaxValue);
        Assert.Contains("count", Assert.Throws<PaxosFormatException>(() => PaxosCodec.Decode(other, out _)).Message, StringComparison.Ordinal);
        BitConverter.TryWriteBytes(other.AsSpan(22), -1);
        Assert.Throws<PaxosFormatException>(() => PaxosCodec.Decode(other, out _));
    }

    [Fact]
    public void Random_bytes_never_escape_as_anything_but_a_format_error()
    {
        var rng = new Random(12345);
        var valid = Messages().Cast<object[]>().Select(row => PaxosCodec.Encode((PaxosMessage)row[0])).ToArray();
        for (var i = 0; i < 20_000; i++)
        {
            var bytes = (byte[])valid[rng.Next(valid.Length)].Clone();
            for (var k = rng.Next(1, 4); k > 0; k--)
            {
                bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
            }
            try
            {
                var m = PaxosCodec.Decode(bytes, out var consumed);
                Assert.InRange(consumed, 2, bytes.Length);
                Assert.NotNull(m);
            }
            catch (PaxosFormatException)
            {
            }
        }
    }
}

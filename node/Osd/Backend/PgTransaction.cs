using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Backend;

/// <summary>What one mutation does to its object. Values are part of the wire format: never renumber.</summary>
public enum MutationKind : byte
{
    Create = 1,
    Write = 2,
    Truncate = 3,
    Zero = 4,
    Remove = 5,
    SetXattr = 6,
    RmXattr = 7,
    OmapSet = 8,
    OmapRm = 9,
    OmapClear = 10,
    OmapRmRange = 11,
}

/// <summary>One change to one object of a PG, in the terms of objects (not of a store): a backend turns it into store
/// operations (a replicated PG applies it as it is on every member; an erasure-coded one into per-shard chunks).</summary>
public sealed record Mutation(MutationKind Kind, string Object, uint Hash)
{
    public long Offset { get; init; }
    public long Length { get; init; }
    public string Key { get; init; } = "";
    public string Key2 { get; init; } = "";
    public ReadOnlyMemory<byte> Data { get; init; }
    public IReadOnlyList<KeyValuePair<string, byte[]>> Pairs { get; init; } = [];
    public IReadOnlyList<string> Keys { get; init; } = [];

    internal void Encode(WireWriter w)
    {
        w.WriteU8((byte)Kind);
        w.WriteString(Object);
        w.WriteU32(Hash);
        w.WriteI64(Offset);
        w.WriteI64(Length);
        w.WriteString(Key);
        w.WriteString(Key2);
        w.WriteBytes(Data.Span);
        PairCodec.WritePairs(w, Pairs);
        PairCodec.WriteKeys(w, Keys);
    }

    internal static Mutation Decode(ref WireReader r)
    {
        var kind = r.ReadU8();
        if (kind is < (byte)MutationKind.Create or > (byte)MutationKind.OmapRmRange)
        {
            throw new WireFormatException($"unknown mutation kind {kind}");
        }
        var m = new Mutation((MutationKind)kind, r.ReadString(Limits.MaxObjectNameBytes), r.ReadU32())
        {
            Offset = r.ReadI64(),
            Length = r.ReadI64(),
            Key = r.ReadString(Limits.MaxKeyBytes),
            Key2 = r.ReadString(Limits.MaxKeyBytes),
            Data = r.ReadBytesShared(Limits.MaxPayload + (1 << 20)),
        };
        var pairs = PairCodec.ReadPairs(ref r, Limits.MaxKeyBytes, Limits.MaxPayload, "pairs");
        var keys = PairCodec.ReadKeys(ref r, Limits.MaxKeyBytes, "keys");
        return m with { Pairs = pairs, Keys = keys };
    }
}

/// <summary>The changes of one logged request, in order (as Ceph's PGTransaction): what a backend applies atomically
/// together with the request's log entry.</summary>
public sealed class PgTransaction
{
    private readonly List<Mutation> _mutations = [];

    public IReadOnlyList<Mutation> Mutations => _mutations;

    public int Count => _mutations.Count;

    public long DataBytes => _mutations.Sum(m => (long)m.Data.Length);

    /// <summary>About the size of the encoding (data, names, keys and values), to size its buffer once.</summary>
    public long EncodedSizeHint => _mutations.Sum(m => 64L + m.Data.Length + (3L * (m.Object.Length + m.Key.Length + m.Key2.Length))
        + m.Pairs.Sum(p => 8L + (3L * p.Key.Length) + p.Value.Length) + m.Keys.Sum(k => 4L + (3L * k.Length)));

    /// <summary>
    /// Set when the mutations' data slice a received message's pooled buffer: whoever applies them after the
    /// request that made them may have completed (a store transaction) takes a reference through it first, and
    /// disposes it when done with the data. Null: the data are the transaction's own.
    /// </summary>
    public Func<IDisposable>? KeepData { get; set; }

    public void Add(Mutation m) => _mutations.Add(m);

    public void Encode(WireWriter w)
    {
        w.WriteU32((uint)_mutations.Count);
        foreach (var m in _mutations)
        {
            m.Encode(w);
        }
    }

    public static PgTransaction Decode(ref WireReader r)
    {
        var t = new PgTransaction();
        var n = Limits.ReadCount(ref r, 30, "mutations");
        for (var i = 0; i < n; i++)
        {
            t.Add(Mutation.Decode(ref r));
        }
        return t;
    }
}

namespace Appliance.Store;

/// <summary>
/// An object's identity inside a collection: its placement hash and its name, like Ceph's hobject. The hash is
/// the caller's (the OSD computes Ceph's rjenkins hash of the name; the store never computes it and does not depend
/// on crush), stored durably with the object. Two objects with the same name and different hashes are different
/// objects. A plain string converts to an id with hash 0 (tools and tests that do not place objects).
///
/// Order (<see cref="CompareTo"/>, the listing order of a collection): Ceph's bitwise sort — by
/// <see cref="SortKey"/> (the hash with its 32 bits reversed), then by name, ordinal. The low bits of the hash (the
/// ones a PG's <c>pg_num</c> mask selects) become the high bits of the sort key, so the objects of one PG, and of
/// each half after a split, are contiguous ranges (<see cref="SortKeyRange.ForHashBits"/>).
/// </summary>
public readonly record struct ObjectId(uint Hash, string Name) : IComparable<ObjectId>
{
    public static implicit operator ObjectId(string name) => new(0, name);

    /// <summary>The hash with its bits reversed: the first part of the listing order.</summary>
    public uint SortKey => ReverseBits(Hash);

    public int CompareTo(ObjectId other)
    {
        var c = SortKey.CompareTo(other.SortKey);
        return c != 0 ? c : string.CompareOrdinal(Name, other.Name);
    }

    /// <summary>Whether the object's hash selects it under <paramref name="bits"/> low bits equal to
    /// <paramref name="match"/> (the objects of a PG seed, or of a split's child).</summary>
    public bool Matches(int bits, uint match) => (Hash & SortKeyRange.Mask(bits)) == match;

    /// <summary>The name, with the hash when it is not 0 (for messages).</summary>
    public override string ToString() => Hash == 0 ? Name : $"{Name}#{Hash:x8}";

    /// <summary>Bit 0 becomes bit 31 and so on.</summary>
    public static uint ReverseBits(uint v)
    {
        v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
        v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
        v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);
        v = ((v >> 8) & 0x00FF00FFu) | ((v & 0x00FF00FFu) << 8);
        return (v >> 16) | (v << 16);
    }
}

/// <summary>A range [<see cref="Start"/>, <see cref="End"/>) of <see cref="ObjectId.SortKey"/>; <see cref="End"/>
/// goes up to 2^32 (the whole key space is [0, 2^32)).</summary>
public readonly record struct SortKeyRange
{
    public const ulong KeySpace = 1UL << 32;

    public SortKeyRange(ulong start, ulong end)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(end, KeySpace);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(start, end);
        Start = start;
        End = end;
    }

    public ulong Start { get; }

    public ulong End { get; }

    public static SortKeyRange All => new(0, KeySpace);

    public bool IsEmpty => Start == End;

    public bool Contains(ObjectId id) => id.SortKey >= Start && id.SortKey < End;

    /// <summary>The low-bit mask of <paramref name="bits"/> bits (0..32).</summary>
    public static uint Mask(int bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bits, 32);
        return bits == 32 ? uint.MaxValue : (1u << bits) - 1;
    }

    /// <summary>The range holding exactly the objects whose hash has <paramref name="match"/> in its low
    /// <paramref name="bits"/> bits: [ReverseBits(match), that + 2^(32 - bits)). A PG of seed s in a pool of
    /// 2^b PGs is ForHashBits(b, s); its split children are the ranges of b+1 bits, contiguous halves of it.</summary>
    public static SortKeyRange ForHashBits(int bits, uint match)
    {
        var mask = Mask(bits);
        if ((match & ~mask) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(match), $"match {match:x} has bits above the low {bits}");
        }
        var start = (ulong)ObjectId.ReverseBits(match);
        return new SortKeyRange(start, start + (1UL << (32 - bits)));
    }
}

using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>
/// A version in a placement group's history, as Ceph's eversion_t: the osdmap epoch in which the primary ordered the
/// change, then a counter that grows by one per change of the PG. Two primaries of different intervals never give the
/// same version (their epochs differ), so a version names one change. Ordered by epoch, then counter.
/// </summary>
public readonly record struct Eversion(uint Epoch, ulong Version) : IComparable<Eversion>
{
    public static readonly Eversion Zero = default;

    public int CompareTo(Eversion other) => Epoch != other.Epoch ? Epoch.CompareTo(other.Epoch) : Version.CompareTo(other.Version);

    public static bool operator <(Eversion a, Eversion b) => a.CompareTo(b) < 0;
    public static bool operator >(Eversion a, Eversion b) => a.CompareTo(b) > 0;
    public static bool operator <=(Eversion a, Eversion b) => a.CompareTo(b) <= 0;
    public static bool operator >=(Eversion a, Eversion b) => a.CompareTo(b) >= 0;

    public static Eversion Max(Eversion a, Eversion b) => a >= b ? a : b;

    public static Eversion Min(Eversion a, Eversion b) => a <= b ? a : b;

    public override string ToString() => $"{Epoch}'{Version}";

    /// <summary>A fixed-width text form whose ordinal order is the version order (PG log keys in omap).</summary>
    public string ToKey() => $"{Epoch:D10}.{Version:D20}";

    public void Encode(WireWriter w)
    {
        w.WriteU32(Epoch);
        w.WriteU64(Version);
    }

    public static Eversion Decode(ref WireReader r) => new(r.ReadU32(), r.ReadU64());
}

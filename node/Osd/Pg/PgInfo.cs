using Appliance.Maps;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Pg;

/// <summary>
/// What a member knows of a PG's history, kept durably beside its log (as Ceph's pg_info_t, reduced to what peering
/// uses): <see cref="LastUpdate"/> the newest logged change it holds; <see cref="LastComplete"/> the version up to
/// which it holds every object (below <see cref="LastUpdate"/> while it is missing objects); <see cref="LogTail"/> the
/// version just before its oldest log entry (entries after the tail are in the log); <see cref="LastEpochStarted"/>
/// the epoch of the last interval in which it was activated; <see cref="SameIntervalSince"/> the first epoch of the
/// interval it last peered in.
/// </summary>
public sealed record PgInfo(PgId Pg, Eversion LastUpdate, Eversion LastComplete, Eversion LogTail, uint LastEpochStarted, uint SameIntervalSince)
{
    private const byte EncodingVersion = 1;

    public static PgInfo Empty(PgId pg) => new(pg, Eversion.Zero, Eversion.Zero, Eversion.Zero, 0, 0);

    public bool IsEmpty => LastUpdate == Eversion.Zero;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(EncodingVersion, 1);
        Pg.Encode(w);
        LastUpdate.Encode(w);
        LastComplete.Encode(w);
        LogTail.Encode(w);
        w.WriteU32(LastEpochStarted);
        w.WriteU32(SameIntervalSince);
        w.EndStruct(m);
    }

    public static PgInfo Decode(ref WireReader r)
    {
        var s = r.BeginStruct(EncodingVersion, "pg info");
        var info = new PgInfo(PgId.Decode(ref r), Eversion.Decode(ref r), Eversion.Decode(ref r), Eversion.Decode(ref r), r.ReadU32(), r.ReadU32());
        r.EndStruct(s);
        return info;
    }

    public byte[] ToBytes()
    {
        using var w = new WireWriter(64);
        Encode(w);
        return w.ToArray();
    }

    public static PgInfo FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        return Decode(ref r);
    }
}

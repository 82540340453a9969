using System.Collections.Immutable;
using Appliance.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>One administrative change: its sequence number, when (Unix ms), who (the authenticated entity), the
/// command as text (never a secret) and the result.</summary>
public sealed record AuditEntry(ulong Seq, long TimeMs, string Who, string Command, string Result)
{
    private const byte Version = 1;

    internal void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(Seq);
        w.WriteI64(TimeMs);
        w.WriteString(Who);
        w.WriteString(Command);
        w.WriteString(Result);
        w.EndStruct(m);
    }

    internal static AuditEntry Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "audit entry");
        var e = new AuditEntry(r.ReadU64(), r.ReadI64(), r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString), r.ReadString(MapCodec.MaxString));
        r.EndStruct(s);
        return e;
    }

    public override string ToString() =>
        $"{DateTimeOffset.FromUnixTimeMilliseconds(TimeMs):yyyy-MM-ddTHH:mm:ss.fffZ} {Who} {Command}: {Result}";
}

/// <summary>
/// The audit log: append-only, sequence-numbered entries. The newest <c>mon_audit_log_max_entries</c> are kept
/// (<see cref="Apply"/> drops older ones), so the state stays bounded; <see cref="LastSeq"/> keeps counting.
/// </summary>
public sealed class AuditLog
{
    private const byte Version = 1;

    public AuditLog(ulong lastSeq, ImmutableList<AuditEntry> entries)
    {
        LastSeq = lastSeq;
        Entries = entries;
    }

    public static AuditLog Empty { get; } = new(0, []);

    /// <summary>The sequence number of the newest entry ever appended (0 for none).</summary>
    public ulong LastSeq { get; }
    /// <summary>The retained entries, oldest first.</summary>
    public ImmutableList<AuditEntry> Entries { get; }

    /// <summary>Retained entries with a sequence number above <paramref name="seq"/>.</summary>
    public IEnumerable<AuditEntry> Since(ulong seq) => Entries.Where(e => e.Seq > seq);

    public AuditLog Apply(AuditIncrement inc, int maxEntries)
    {
        ArgumentNullException.ThrowIfNull(inc);
        var expect = LastSeq + 1;
        foreach (var e in inc.Entries)
        {
            if (e.Seq != expect++)
            {
                throw new MapSequenceException($"audit entry {e.Seq} appended after {expect - 2}");
            }
        }
        var all = Entries.AddRange(inc.Entries);
        if (all.Count > maxEntries)
        {
            all = all.RemoveRange(0, all.Count - maxEntries);
        }
        return new AuditLog(inc.Entries.Count > 0 ? inc.Entries[^1].Seq : LastSeq, all);
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(LastSeq);
        w.WriteU32((uint)Entries.Count);
        foreach (var e in Entries)
        {
            e.Encode(w);
        }
        w.EndStruct(m);
    }

    public static AuditLog Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "audit log");
        var last = r.ReadU64();
        var n = MapCodec.ReadCount(ref r, 6, "audit entries");
        var b = ImmutableList.CreateBuilder<AuditEntry>();
        for (var i = 0; i < n; i++)
        {
            b.Add(AuditEntry.Decode(ref r));
        }
        r.EndStruct(s);
        return new AuditLog(last, b.ToImmutable());
    }

    public byte[] ToBytes() => MapCodec.ToBytes(Encode);

    public static AuditLog FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var log = Decode(ref r);
        r.ExpectEnd("audit log");
        return log;
    }
}

/// <summary>Entries appended by one change.</summary>
public sealed record AuditIncrement(IReadOnlyList<AuditEntry> Entries)
{
    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU32((uint)Entries.Count);
        foreach (var e in Entries)
        {
            e.Encode(w);
        }
        w.EndStruct(m);
    }

    public static AuditIncrement Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "audit increment");
        var n = MapCodec.ReadCount(ref r, 6, "audit increment entries");
        var list = new List<AuditEntry>(n);
        for (var i = 0; i < n; i++)
        {
            list.Add(AuditEntry.Decode(ref r));
        }
        r.EndStruct(s);
        return new AuditIncrement(list);
    }
}

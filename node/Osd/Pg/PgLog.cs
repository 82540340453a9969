using Appliance.Osd.Protocol;

namespace Appliance.Osd.Pg;

/// <summary>
/// The in-memory copy of a PG's log: entries in version order after <see cref="Tail"/>, and an index by request id
/// so a resend is answered from its entry. The durable copy is omap entries of the PG's meta object, changed in the
/// same store transaction as the objects (<see cref="PgMeta"/>); this class only mirrors what was submitted.
/// Trimmed to <see cref="MaxEntries"/>: a resend older than that is applied again (as in Ceph past its dup window),
/// which is why clients give up on a request long before that many newer changes can reach one PG.
/// </summary>
public sealed class PgLog
{
    private readonly List<PgLogEntry> _entries = [];
    private readonly Dictionary<ReqId, PgLogEntry> _byReqId = [];

    public PgLog(Eversion tail, IEnumerable<PgLogEntry> entries)
    {
        Tail = tail;
        foreach (var e in entries)
        {
            Append(e);
        }
    }

    /// <summary>How many entries are kept (Ceph keeps 250-3000 per PG).</summary>
    public const int MaxEntries = 3000;
    /// <summary>Trimming leaves this many, so it runs once per <c>MaxEntries - TrimTarget</c> writes.</summary>
    public const int TrimTarget = 2500;

    /// <summary>The version just before the oldest entry kept (the whole history up to it is in the objects).</summary>
    public Eversion Tail { get; private set; }

    public Eversion Head => _entries.Count > 0 ? _entries[^1].Version : Tail;

    public IReadOnlyList<PgLogEntry> Entries => _entries;

    public int Count => _entries.Count;

    public void Append(PgLogEntry entry)
    {
        if (entry.Version <= Head)
        {
            throw new InvalidOperationException($"log entry {entry.Version} is not after the head {Head}");
        }
        _entries.Add(entry);
        if (entry.ReqId.Tid != 0)
        {
            _byReqId[entry.ReqId] = entry;
        }
    }

    public PgLogEntry? FindRequest(ReqId id) => _byReqId.GetValueOrDefault(id);

    public bool Contains(Eversion v) => v > Tail && v <= Head && IndexOf(v) >= 0;

    private int IndexOf(Eversion v)
    {
        int lo = 0, hi = _entries.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var c = _entries[mid].Version.CompareTo(v);
            if (c == 0)
            {
                return mid;
            }
            if (c < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return -1;
    }

    /// <summary>Entries after <paramref name="v"/>, oldest first.</summary>
    public IEnumerable<PgLogEntry> After(Eversion v)
    {
        foreach (var e in _entries)
        {
            if (e.Version > v)
            {
                yield return e;
            }
        }
    }

    /// <summary>Drops the oldest entries beyond <see cref="TrimTarget"/>; returns the new tail, or null if nothing
    /// was trimmed (the caller removes the same entries from the durable log).</summary>
    public (Eversion From, Eversion To)? TrimIfNeeded()
    {
        if (_entries.Count <= MaxEntries)
        {
            return null;
        }
        var drop = _entries.Count - TrimTarget;
        var from = Tail;
        for (var i = 0; i < drop; i++)
        {
            if (_byReqId.TryGetValue(_entries[i].ReqId, out var e) && e.Version == _entries[i].Version)
            {
                _byReqId.Remove(_entries[i].ReqId);
            }
        }
        Tail = _entries[drop - 1].Version;
        _entries.RemoveRange(0, drop);
        return (from, Tail);
    }

    /// <summary>Replaces everything with another member's log (peering adopted it).</summary>
    public void Reset(Eversion tail, IEnumerable<PgLogEntry> entries)
    {
        _entries.Clear();
        _byReqId.Clear();
        Tail = tail;
        foreach (var e in entries)
        {
            Append(e);
        }
    }
}

namespace Appliance.Fs.Meta;

/// <summary>Which lock table a lock is in: POSIX byte-range locks (fcntl) or whole-file flock locks. Linux keeps
/// them apart: a flock lock never conflicts with a POSIX lock.</summary>
public enum LockKind : byte
{
    Posix = 0,
    Flock = 1,
}

/// <summary>A lock's type, with fcntl's values (F_RDLCK, F_WRLCK, F_UNLCK).</summary>
public enum LockType : byte
{
    Read = 0,
    Write = 1,
    Unlock = 2,
}

/// <summary>
/// One lock (or a lock request): who holds it — the mount instance <see cref="Mount"/> and the kernel's lock owner
/// id <see cref="Owner"/> within that mount (a process's files for POSIX locks, an open file for flock) — the pid
/// that took it (what F_GETLK reports), its kind and type, and the byte range [<see cref="Start"/>, <see cref="End"/>]
/// (inclusive; <see cref="ToEnd"/> is "to the end of the file", as the kernel's OFFSET_MAX).
/// </summary>
public sealed record FileLock(string Mount, ulong Owner, uint Pid, LockKind Kind, LockType Type, ulong Start, ulong End)
{
    public const byte FormatVersion = 1;
    /// <summary>OFFSET_MAX: a range that runs to the end of the file, however long it grows.</summary>
    public const ulong ToEnd = long.MaxValue;

    public bool SameOwner(FileLock o) => Owner == o.Owner && Mount == o.Mount && Kind == o.Kind;

    public bool Overlaps(FileLock o) => Start <= o.End && o.Start <= End;

    /// <summary>Whether this lock keeps <paramref name="request"/> from being granted: another owner's lock of the
    /// same kind over an overlapping range where either is a write lock.</summary>
    public bool Blocks(FileLock request) =>
        Kind == request.Kind && !SameOwner(request) && Overlaps(request) && (Type == LockType.Write || request.Type == LockType.Write);

    public void Write(MetaWriter w)
    {
        w.U8(FormatVersion);
        w.String(Mount);
        w.U64(Owner);
        w.U32(Pid);
        w.U8((byte)Kind);
        w.U8((byte)Type);
        w.U64(Start);
        w.U64(End);
    }

    public static FileLock Read(ref MetaReader r)
    {
        r.Version(FormatVersion, "a file lock");
        var l = new FileLock(r.String(), r.U64(), r.U32(), (LockKind)r.U8(), (LockType)r.U8(), r.U64(), r.U64());
        if (l.Kind > LockKind.Flock || l.Type > LockType.Unlock || l.Start > l.End || l.End > ToEnd || l.Mount.Length == 0)
        {
            throw new MetaFormatException($"a file lock out of range ({l})");
        }
        return l;
    }

    public byte[] Encode()
    {
        var w = new MetaWriter();
        Write(w);
        return w.ToArray();
    }

    public static FileLock Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        var l = Read(ref r);
        return r.End ? l : throw new MetaFormatException("a file lock has trailing bytes");
    }
}

/// <summary>
/// The locks held on one inode (the value of its lock record). Kept canonical: one owner's locks of one kind never
/// overlap, and adjacent or overlapping ranges of the same owner and type are merged, as Linux keeps them.
/// </summary>
public static class LockTable
{
    public const byte FormatVersion = 1;
    /// <summary>At most this many locks on one inode (the record stays well below a method's 64 KiB); more: ENOLCK.</summary>
    public const int MaxLocks = 512;

    public static byte[] Encode(IReadOnlyList<FileLock> locks)
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.U32((uint)locks.Count);
        foreach (var l in locks)
        {
            l.Write(w);
        }
        return w.ToArray();
    }

    public static List<FileLock> Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, "a lock record");
        var count = r.U32();
        if (count > MaxLocks)
        {
            throw new MetaFormatException($"a lock record of {count} locks");
        }
        var locks = new List<FileLock>((int)count);
        for (var i = 0; i < count; i++)
        {
            var l = FileLock.Read(ref r);
            if (l.Type == LockType.Unlock)
            {
                throw new MetaFormatException("a lock record holds an unlock");
            }
            locks.Add(l);
        }
        return r.End ? locks : throw new MetaFormatException("a lock record has trailing bytes");
    }

    /// <summary>The first lock that keeps <paramref name="request"/> from being granted, among those
    /// <paramref name="live"/> accepts.</summary>
    public static FileLock? Conflict(IEnumerable<FileLock> locks, FileLock request, Func<FileLock, bool> live) =>
        locks.FirstOrDefault(l => l.Blocks(request) && live(l));

    /// <summary>
    /// The table after <paramref name="request"/> by its owner (no conflict checked here): its range taken out of the
    /// owner's locks of that kind (splitting one that covers more), then, unless it is an unlock, put in with its type
    /// and merged with the owner's adjacent or overlapping locks of the same type. Other owners' locks stay as they are.
    /// </summary>
    public static List<FileLock> Apply(IReadOnlyList<FileLock> locks, FileLock request)
    {
        var result = new List<FileLock>(locks.Count + 2);
        var mine = new List<FileLock>();
        foreach (var l in locks)
        {
            if (!l.SameOwner(request))
            {
                result.Add(l);
                continue;
            }
            if (!l.Overlaps(request))
            {
                mine.Add(l);
                continue;
            }
            // Keep what lies outside the request's range.
            if (l.Start < request.Start)
            {
                mine.Add(l with { End = request.Start - 1 });
            }
            if (l.End > request.End)
            {
                mine.Add(l with { Start = request.End + 1 });
            }
        }
        if (request.Type != LockType.Unlock)
        {
            var merged = request;
            // Merge with this owner's locks of the same type that touch or overlap it (several may: a lock bridging two).
            for (var changed = true; changed;)
            {
                changed = false;
                for (var i = 0; i < mine.Count; i++)
                {
                    var l = mine[i];
                    if (l.Type == merged.Type && Touches(l, merged))
                    {
                        merged = merged with { Start = Math.Min(l.Start, merged.Start), End = Math.Max(l.End, merged.End), Pid = request.Pid };
                        mine.RemoveAt(i);
                        changed = true;
                        break;
                    }
                }
            }
            mine.Add(merged);
        }
        mine.Sort((a, b) => a.Start.CompareTo(b.Start));
        result.AddRange(mine);
        return result;
    }

    private static bool Touches(FileLock a, FileLock b) =>
        a.Start <= (b.End == ulong.MaxValue ? b.End : b.End + 1) && b.Start <= (a.End == ulong.MaxValue ? a.End : a.End + 1);
}

/// <summary>
/// A mount's lease: the mount is alive while the metadata PG's clock is before <see cref="ExpiresMs"/> (the primary's
/// clock judges every lease, so the mounts' clocks never matter). A mount renews it well before it runs out; the
/// locks of a mount whose lease ran out are released by the next operation that meets them or by a sweep.
/// </summary>
public sealed record MountLease(long ExpiresMs, uint LeaseMs)
{
    public const byte FormatVersion = 1;
    /// <summary>The longest lease a mount may ask for.</summary>
    public const uint MaxLeaseMs = 10 * 60 * 1000;

    public bool Live(long nowMs) => nowMs < ExpiresMs;

    public byte[] Encode()
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.I64(ExpiresMs);
        w.U32(LeaseMs);
        return w.ToArray();
    }

    public static MountLease Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, "a mount lease");
        var lease = new MountLease(r.I64(), r.U32());
        return r.End ? lease : throw new MetaFormatException("a mount lease has trailing bytes");
    }
}

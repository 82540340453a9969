using Xunit.Abstractions;

namespace Appliance.Fs.Meta.Tests;

/// <summary>flock and POSIX byte-range locks in the metadata: conflicts, POSIX's splitting and merging of one
/// owner's ranges, the two kinds kept apart, and the mount leases that locks live by (a mount whose lease ran out
/// loses its locks to the next operation that meets them, to a sweep, or at its orderly end).</summary>
public class LockTests(ITestOutputHelper output)
{
    private const string A = "client.a.1";
    private const string B = "client.b.2";
    private const uint LeaseMs = 5000;

    private static FileLock Posix(string mount, ulong owner, LockType type, ulong start, ulong end) => new(mount, owner, 100, LockKind.Posix, type, start, end);

    private static FileLock Flock(string mount, ulong owner, LockType type) => new(mount, owner, 100, LockKind.Flock, type, 0, FileLock.ToEnd);

    private static Task<MetaReply> Set(MetaFs fs, ulong ino, FileLock l) => fs.Run(MetaOp.SetLock, null, r => r with { Ino = ino, Data = l.Encode() });

    private static Task<MetaReply> Get(MetaFs fs, ulong ino, FileLock l) => fs.Run(MetaOp.GetLock, null, r => r with { Ino = ino, Data = l.Encode() });

    private static Task<MetaReply> Renew(MetaFs fs, string mount, bool start = false) =>
        fs.Run(MetaOp.RenewLease, null, r => r with { Name = mount, Limit = LeaseMs, Flags = start ? 1u : 0 });

    private static async Task<(MetaFs Fs, ulong File)> WithLeasesAsync(params string[] mounts)
    {
        var fs = await MetaFs.NewAsync();
        var file = await fs.CreateOk(MetaFs.Root, "f");
        foreach (var m in mounts)
        {
            MetaFs.Ok(await Renew(fs, m, start: true));
        }
        return (fs, file);
    }

    private static List<FileLock> Table(MetaFs fs, ulong ino) =>
        fs.Store.Locks.TryGetValue(ino, out var raw) ? LockTable.Decode(raw) : [];

    [Fact]
    public async Task Read_locks_are_shared_write_locks_exclusive_and_the_conflict_is_named()
    {
        var (fs, f) = await WithLeasesAsync(A, B);
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Read, 0, 99)));
        MetaFs.Ok(await Set(fs, f, Posix(B, 7, LockType.Read, 50, 149)));
        var refused = await Set(fs, f, Posix(B, 7, LockType.Write, 90, 120));
        Assert.Equal(Errno.EAGAIN, refused.Errno);
        Assert.Equal(Posix(A, 1, LockType.Read, 0, 99), refused.Lock);
        // Beyond A's range B may upgrade its own lock; GetLock names A's lock for a write probe over both.
        MetaFs.Ok(await Set(fs, f, Posix(B, 7, LockType.Write, 100, 149)));
        Assert.Equal(Posix(A, 1, LockType.Read, 0, 99), (await Get(fs, f, Posix(B, 9, LockType.Write, 0, 10))).Lock);
        Assert.Null((await Get(fs, f, Posix(B, 9, LockType.Read, 0, 99))).Lock);
        Assert.Equal(Posix(B, 7, LockType.Write, 100, 149), (await Get(fs, f, Posix(A, 1, LockType.Read, 120, 120))).Lock);
        // The same owner in another mount is another owner.
        Assert.Equal(Errno.EAGAIN, (await Set(fs, f, Posix(A, 7, LockType.Read, 120, 120))).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task An_owners_ranges_split_on_a_partial_unlock_and_merge_when_adjacent()
    {
        var (fs, f) = await WithLeasesAsync(A);
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 0, 99)));
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Unlock, 40, 59)));
        Assert.Equal([Posix(A, 1, LockType.Write, 0, 39), Posix(A, 1, LockType.Write, 60, 99)], Table(fs, f));
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Read, 30, 69)));
        Assert.Equal([Posix(A, 1, LockType.Write, 0, 29), Posix(A, 1, LockType.Read, 30, 69), Posix(A, 1, LockType.Write, 70, 99)], Table(fs, f));
        // A write lock over the read one bridges and merges all three.
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 30, 69)));
        Assert.Equal([Posix(A, 1, LockType.Write, 0, 99)], Table(fs, f));
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 100, FileLock.ToEnd)));
        Assert.Equal([Posix(A, 1, LockType.Write, 0, FileLock.ToEnd)], Table(fs, f));
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Unlock, 0, FileLock.ToEnd)));
        Assert.Empty(Table(fs, f));
        Assert.False(fs.Store.Locks.ContainsKey(f)); // no record left for an inode without locks
        fs.Store.Check();
    }

    [Fact]
    public async Task Flock_and_posix_locks_are_kept_apart_and_flock_converts()
    {
        var (fs, f) = await WithLeasesAsync(A, B);
        MetaFs.Ok(await Set(fs, f, Flock(A, 1, LockType.Write)));
        MetaFs.Ok(await Set(fs, f, Posix(B, 2, LockType.Write, 0, FileLock.ToEnd))); // another table
        Assert.Equal(Errno.EAGAIN, (await Set(fs, f, Flock(B, 3, LockType.Read))).Errno);
        Assert.Equal(Errno.EAGAIN, (await Set(fs, f, Flock(A, 2, LockType.Read))).Errno); // another open file of A
        MetaFs.Ok(await Set(fs, f, Flock(A, 1, LockType.Read))); // LOCK_SH over LOCK_EX: converted
        MetaFs.Ok(await Set(fs, f, Flock(B, 3, LockType.Read)));
        Assert.Equal(3, Table(fs, f).Count);
        fs.Store.Check();
    }

    [Fact]
    public async Task A_mount_without_a_live_lease_takes_no_lock_and_a_lease_that_ran_out_stays_out()
    {
        var (fs, f) = await WithLeasesAsync(A);
        var before = fs.Store.Snapshot();
        Assert.Equal(Errno.ENOLCK, (await Set(fs, f, Posix(B, 1, LockType.Read, 0, 0))).Errno);
        Assert.Equal(Errno.ESTALE, (await Renew(fs, B)).Errno); // a renewal is not a start
        Assert.Equal(before, fs.Store.Snapshot());
        MetaFs.Ok(await Renew(fs, A));
        fs.Store.NowMs += LeaseMs;
        Assert.Equal(Errno.ENOLCK, (await Set(fs, f, Posix(A, 1, LockType.Read, 0, 0))).Errno);
        Assert.Equal(Errno.ESTALE, (await Renew(fs, A)).Errno);
        Assert.Equal(Errno.ESTALE, (await Renew(fs, A, start: true)).Errno);
        MetaFs.Ok(await fs.Run(MetaOp.EndLease, null, r => r with { Name = A }));
        MetaFs.Ok(await Renew(fs, A, start: true));
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Read, 0, 0)));
        fs.Store.Check();
    }

    [Fact]
    public async Task Locks_of_a_mount_whose_lease_ran_out_go_to_the_next_mount_that_meets_them()
    {
        var (fs, f) = await WithLeasesAsync(A, B);
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 0, 9)));
        MetaFs.Ok(await Set(fs, f, Flock(A, 2, LockType.Write)));
        fs.Store.NowMs += LeaseMs - 1;
        MetaFs.Ok(await Renew(fs, B));
        Assert.Equal(Errno.EAGAIN, (await Set(fs, f, Flock(B, 3, LockType.Write))).Errno); // A's lease still runs
        fs.Store.NowMs += 1;
        Assert.Null((await Get(fs, f, Flock(B, 3, LockType.Write))).Lock);
        MetaFs.Ok(await Set(fs, f, Flock(B, 3, LockType.Write)));
        Assert.Equal([Flock(B, 3, LockType.Write)], Table(fs, f)); // both of A's locks dropped on the way
        fs.Store.Check();
    }

    [Fact]
    public async Task A_sweep_releases_every_lock_of_dead_mounts_page_by_page_and_their_leases()
    {
        var (fs, _) = await WithLeasesAsync(A, B);
        var files = new List<ulong>();
        for (var i = 0; i < MetaOps.LockPage + 20; i++)
        {
            var f = await fs.CreateOk(MetaFs.Root, $"f{i}");
            files.Add(f);
            MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 0, 0)));
            if (i % 3 == 0)
            {
                MetaFs.Ok(await Set(fs, f, Posix(B, 1, LockType.Write, 1, 1)));
            }
        }
        // Nothing has run out: a sweep changes nothing.
        var before = fs.Store.Snapshot();
        Assert.False(MetaFs.Ok(await fs.Run(MetaOp.SweepLeases, null, r => r)).More);
        Assert.Equal(before, fs.Store.Snapshot());
        fs.Store.NowMs += LeaseMs / 2;
        MetaFs.Ok(await Renew(fs, B));
        fs.Store.NowMs += LeaseMs / 2;
        var first = MetaFs.Ok(await fs.Run(MetaOp.SweepLeases, null, r => r));
        Assert.True(first.More);
        Assert.True(fs.Store.Leases.ContainsKey(A)); // its lease goes only once all its locks have
        var last = MetaFs.Ok(await fs.Run(MetaOp.SweepLeases, null, r => r with { Ino = first.Next }));
        Assert.False(last.More);
        Assert.Equal([B], fs.Store.Leases.Keys);
        Assert.All(fs.Store.Locks.Values, raw => Assert.All(LockTable.Decode(raw), l => Assert.Equal(B, l.Mount)));
        Assert.Equal(files.Where((_, i) => i % 3 == 0), fs.Store.Locks.Keys);
        fs.Store.Check();
        // An orderly end releases the rest the same way.
        var end = MetaFs.Ok(await fs.Run(MetaOp.EndLease, null, r => r with { Name = B }));
        while (end.More)
        {
            end = MetaFs.Ok(await fs.Run(MetaOp.EndLease, null, r => r with { Name = B, Ino = end.Next }));
        }
        Assert.Empty(fs.Store.Locks);
        Assert.Empty(fs.Store.Leases);
        fs.Store.Check();
    }

    [Fact]
    public async Task A_purged_file_takes_its_locks_along_and_fs_check_repairs_lock_records()
    {
        var (fs, f) = await WithLeasesAsync(A);
        MetaFs.Ok(await Set(fs, f, Posix(A, 1, LockType.Write, 0, 0)));
        MetaFs.Ok(await fs.Unlink(MetaFs.Root, "f"));
        MetaFs.Ok(await fs.Run(MetaOp.Purge, null, r => r with { Ino = f }));
        Assert.Empty(fs.Store.Locks);
        fs.Store.Check();

        var g = await fs.CreateOk(MetaFs.Root, "g");
        MetaFs.Ok(await Set(fs, g, Posix(A, 1, LockType.Write, 0, 0)));
        var image = Image(fs);
        Assert.True(FsCheck.Run(image).Clean);
        // Damage: locks on an inode that does not exist, a lock of a mount with no lease, records that do not decode.
        image.Locks[999] = LockTable.Encode([Posix(A, 1, LockType.Read, 0, 0)]);
        image.Locks[g] = LockTable.Encode([Posix(A, 1, LockType.Write, 0, 0), Posix(B, 1, LockType.Read, 5, 5)]);
        image.Leases["client.c.3"] = [9, 9];
        var found = FsCheck.Run(image);
        Assert.Contains(found.Problems, p => p.Contains("locks on inode 999, which does not exist"));
        Assert.Contains(found.Problems, p => p.Contains($"a lock on inode {g} of mount {B}, which has no lease"));
        Assert.Contains(found.Problems, p => p.Contains("the lease of mount client.c.3 does not decode"));
        fs.Store.Locks[999] = image.Locks[999];
        fs.Store.Locks[g] = image.Locks[g];
        fs.Store.Leases["client.c.3"] = [9, 9];
        fs.Store.Apply(found.Repair);
        fs.Store.Check();
        Assert.True(FsCheck.Run(Image(fs)).Clean);
        Assert.Equal([Posix(A, 1, LockType.Write, 0, 0)], Table(fs, g));
    }

    private static FsImage Image(MetaFs fs) => new()
    {
        Super = fs.Store.Super,
        Inodes = new(fs.Store.Inodes),
        Entries = fs.Store.Entries.ToDictionary(kv => kv.Key, kv => new SortedDictionary<string, byte[]>(kv.Value, StringComparer.Ordinal)),
        Orphans = [.. fs.Store.Orphans],
        Locks = new(fs.Store.Locks),
        Leases = new(fs.Store.Leases, StringComparer.Ordinal),
        StripeSize = 4 << 20,
    };

    [Fact]
    public void Lock_records_and_replies_round_trip_and_a_reply_without_locks_stays_version_1()
    {
        var l = new FileLock("client.x.1", ulong.MaxValue, 4242, LockKind.Flock, LockType.Write, 0, FileLock.ToEnd);
        Assert.Equal(l, FileLock.Decode(l.Encode()));
        Assert.Equal([l, l with { Kind = LockKind.Posix, Type = LockType.Read, Start = 5, End = 6 }], LockTable.Decode(LockTable.Encode([l, l with { Kind = LockKind.Posix, Type = LockType.Read, Start = 5, End = 6 }])));
        Assert.Equal(new MountLease(123, 456), MountLease.Decode(new MountLease(123, 456).Encode()));
        Assert.Equal(1, new MetaReply(0) { Inodes = 3 }.Encode()[0]);
        var reply = new MetaReply(Errno.EAGAIN) { Lock = l, Next = 77, More = true };
        var back = MetaReply.Decode(reply.Encode());
        Assert.Equal((l, 77UL, true), (back.Lock, back.Next, back.More));
        Assert.Throws<MetaFormatException>(() => FileLock.Decode((l with { Start = 9, End = 8 }).Encode()));
        Assert.Throws<MetaFormatException>(() => LockTable.Decode(LockTable.Encode([l with { Type = LockType.Unlock }])));
    }

    /// <summary>Random lock requests of three owners in two mounts over a small file, against a byte-by-byte model
    /// of POSIX's rules: the same grants and refusals, and the same locks held afterwards (byte 64 stands for
    /// everything past 63, which only "to the end" ranges reach).</summary>
    [Fact]
    public async Task Random_posix_requests_match_a_byte_by_byte_model()
    {
        var seed = TestSeed.Get("LockTests random posix", output);
        var rng = new Random(seed);
        var (fs, f) = await WithLeasesAsync(A, B);
        (string, ulong)[] owners = [(A, 1), (A, 2), (B, 1)];
        var model = new LockType?[owners.Length, 65];
        for (var step = 0; step < 2000; step++)
        {
            var o = rng.Next(owners.Length);
            var type = (LockType)rng.Next(3);
            var start = (ulong)rng.Next(64);
            var end = rng.Next(5) == 0 ? FileLock.ToEnd : start + (ulong)rng.Next(64 - (int)start);
            var last = end == FileLock.ToEnd ? 64 : (int)end;
            var conflict = type != LockType.Unlock && Enumerable.Range((int)start, last - (int)start + 1).Any(b =>
                Enumerable.Range(0, owners.Length).Any(p => p != o && model[p, b] is { } t && (t == LockType.Write || type == LockType.Write)));
            var r = await Set(fs, f, Posix(owners[o].Item1, owners[o].Item2, type, start, end));
            Assert.True(conflict ? r.Errno == Errno.EAGAIN : r.IsOk, $"step {step}: owner {o} {type} [{start}, {end}]: errno {r.Errno}, the model says {(conflict ? "conflict" : "granted")}");
            if (!conflict)
            {
                for (var b = (int)start; b <= last; b++)
                {
                    model[o, b] = type == LockType.Unlock ? null : type;
                }
            }
            var held = new LockType?[owners.Length, 65];
            foreach (var l in Table(fs, f))
            {
                var p = Array.IndexOf(owners, (l.Mount, l.Owner));
                for (var b = (int)l.Start; b <= (l.End == FileLock.ToEnd ? 64 : (int)l.End); b++)
                {
                    held[p, b] = l.Type;
                }
                Assert.True(l.End == FileLock.ToEnd || l.End < 64);
            }
            for (var p = 0; p < owners.Length; p++)
            {
                for (var b = 0; b < 65; b++)
                {
                    Assert.True(held[p, b] == model[p, b], $"step {step}: owner {p} byte {b}: holds {held[p, b]}, the model says {model[p, b]}");
                }
            }
        }
        fs.Store.Check();
    }
}

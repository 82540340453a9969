using Xunit.Abstractions;

namespace Appliance.Fs.Meta.Tests;

/// <summary>rename(2) and renameat2: replace, NOREPLACE, EXCHANGE, directories, and atomicity (a refused rename
/// changes nothing; a random sequence of operations never breaks the filesystem's invariants).</summary>
public class RenameTests(ITestOutputHelper output)
{
    private const uint NoReplace = 1, Exchange = 2;

    [Fact]
    public async Task Rename_replaces_a_file_and_releases_it()
    {
        var fs = await MetaFs.NewAsync();
        var a = await fs.CreateOk(MetaFs.Root, "a");
        var b = await fs.CreateOk(MetaFs.Root, "b");
        var r = MetaFs.Ok(await fs.Rename(MetaFs.Root, "a", MetaFs.Root, "b"));
        Assert.Equal(b, r.Released!.Ino);
        Assert.Equal(a, MetaFs.Ok(await fs.Lookup(MetaFs.Root, "b")).Inode!.Ino);
        Assert.Equal(Errno.ENOENT, (await fs.Lookup(MetaFs.Root, "a")).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task Noreplace_and_exchange()
    {
        var fs = await MetaFs.NewAsync();
        var d = await fs.MkdirOk(MetaFs.Root, "d");
        var f = await fs.CreateOk(MetaFs.Root, "f");
        var before = fs.Store.Snapshot();
        Assert.Equal(Errno.EEXIST, (await fs.Rename(MetaFs.Root, "f", MetaFs.Root, "d", NoReplace)).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.Rename(MetaFs.Root, "f", MetaFs.Root, "d", NoReplace | Exchange)).Errno);
        Assert.Equal(Errno.ENOENT, (await fs.Rename(MetaFs.Root, "f", MetaFs.Root, "none", Exchange)).Errno);
        Assert.Equal(before, fs.Store.Snapshot());
        // Exchange a directory in the root with a file in another directory: links of both parents follow.
        var g = await fs.CreateOk(d, "g");
        var sub = await fs.MkdirOk(MetaFs.Root, "sub");
        MetaFs.Ok(await fs.Rename(MetaFs.Root, "sub", d, "g", Exchange));
        Assert.Equal(sub, MetaFs.Ok(await fs.Lookup(d, "g")).Inode!.Ino);
        Assert.Equal(g, MetaFs.Ok(await fs.Lookup(MetaFs.Root, "sub")).Inode!.Ino);
        Assert.Equal(d, (await fs.Inode(sub)).Parent);
        Assert.Equal(3u, (await fs.Inode(d)).Nlink);
        Assert.Equal(3u, (await fs.Inode(MetaFs.Root)).Nlink);
        fs.Store.Check();
        _ = f;
    }

    [Fact]
    public async Task A_directory_cannot_move_below_itself_or_over_a_non_empty_one()
    {
        var fs = await MetaFs.NewAsync();
        var a = await fs.MkdirOk(MetaFs.Root, "a");
        var b = await fs.MkdirOk(a, "b");
        await fs.MkdirOk(b, "c");
        var x = await fs.MkdirOk(MetaFs.Root, "x");
        await fs.CreateOk(x, "file");
        var before = fs.Store.Snapshot();
        Assert.Equal(Errno.EINVAL, (await fs.Rename(MetaFs.Root, "a", b, "a2")).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.Rename(MetaFs.Root, "a", a, "self")).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.Rename(a, "b", b, "c", Exchange)).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await fs.Rename(a, "b", MetaFs.Root, "x")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await fs.Rename(MetaFs.Root, "a", x, "file")).Errno);
        Assert.Equal(Errno.EISDIR, (await fs.Rename(x, "file", MetaFs.Root, "a")).Errno);
        Assert.Equal(Errno.EBUSY, (await fs.Rename(a, ".", MetaFs.Root, "dot")).Errno);
        Assert.Equal(before, fs.Store.Snapshot());
        // Over an empty directory, across parents: the replaced directory goes, link counts move.
        MetaFs.Ok(await fs.RmDir(x, "file") is { Errno: Errno.ENOTDIR } ? await fs.Unlink(x, "file") : throw new InvalidOperationException());
        MetaFs.Ok(await fs.Rename(a, "b", MetaFs.Root, "x"));
        Assert.Equal(Errno.ENOENT, (await fs.GetAttr(x)).Errno);
        Assert.Equal(2u, (await fs.Inode(a)).Nlink);
        Assert.Equal(MetaFs.Root, (await fs.Inode(b)).Parent);
        fs.Store.Check();
    }

    [Fact]
    public async Task Moving_a_directory_to_another_parent_needs_write_permission_on_it()
    {
        var fs = await MetaFs.NewAsync();
        var alice = new Caller(1000, 1000, []);
        var open = await fs.MkdirOk(MetaFs.Root, "open", 0x1FF);
        MetaFs.Ok(await fs.Make(open, "mine", ModeBits.IfDir | 0x1ED, alice));
        var rootsDir = await fs.MkdirOk(open, "roots", 0x1ED);
        Assert.Equal(Errno.EACCES, (await fs.Rename(open, "roots", MetaFs.Root, "moved", 0, alice)).Errno); // root's dir 0755
        var other = await fs.MkdirOk(MetaFs.Root, "other", 0x1FF);
        MetaFs.Ok(await fs.Rename(open, "mine", other, "mine", 0, alice));
        MetaFs.Ok(await fs.Rename(open, "roots", open, "renamed", 0, alice)); // same parent: no ".." to rewrite
        _ = rootsDir;
        fs.Store.Check();
    }

    /// <summary>
    /// Random operations on a small tree; after each, the filesystem's invariants hold (links, children, parents,
    /// orphans, the inode count), and an operation that failed left every object byte for byte as it was.
    /// </summary>
    [Fact]
    public async Task Random_operations_keep_every_invariant_and_failures_change_nothing()
    {
        var count = TestSeed.Soak ? 200_000 : 4_000;
        var seed = TestSeed.Get($"RenameTests.Random ({count} operations)", output);
        var rng = new Random(seed);
        var fs = await MetaFs.NewAsync();
        string[] names = ["a", "b", "c", "d"];
        var errors = new Dictionary<string, int>();
        for (var i = 0; i < count; i++)
        {
            var dirs = fs.Store.Inodes.Where(kv => Inode.Decode(kv.Value).IsDir).Select(kv => kv.Key).ToList();
            var all = fs.Store.Inodes.Keys.ToList();
            ulong D() => rng.Next(8) == 0 ? all[rng.Next(all.Count)] : dirs[rng.Next(dirs.Count)];
            string N() => names[rng.Next(names.Length)];
            var before = fs.Store.Snapshot();
            var kind = rng.Next(9);
            var reply = kind switch
            {
                0 => await fs.Make(D(), N(), ModeBits.IfReg | 0x1A4),
                1 => await fs.Make(D(), N(), ModeBits.IfDir | 0x1ED),
                // Orphans (and, now and then, an inode that is not one) ride along to be purged with the unlink.
                2 => await fs.Run(MetaOp.Unlink, null, r => r with
                {
                    Ino = D(),
                    Name = N(),
                    Data = MetaOps.EncodePurgeRiders([.. fs.Store.Orphans.Where(_ => rng.Next(2) == 0), .. rng.Next(4) == 0 ? [all[rng.Next(all.Count)]] : Array.Empty<ulong>()]),
                }),
                3 => await fs.RmDir(D(), N()),
                4 => await fs.Link(all[rng.Next(all.Count)], D(), N()),
                5 or 6 => await fs.Rename(D(), N(), D(), N(), (uint)rng.Next(3)),
                7 => await fs.Run(MetaOp.Purge, null, r => r with { Ino = fs.Store.Orphans.Count > 0 ? fs.Store.Orphans.Min : 9999 }),
                _ => await fs.SetAttr(all[rng.Next(all.Count)], AttrMask.Mode, mode: (uint)rng.Next(0x200)),
            };
            var key = $"{kind}:{reply.Errno}";
            errors[key] = errors.GetValueOrDefault(key) + 1;
            if (!reply.IsOk)
            {
                Assert.True(before == fs.Store.Snapshot(), $"seed {seed}, operation {i}: failed with {reply.Errno} but changed something");
            }
            fs.Store.Check();
            if (i % 500 == 0)
            {
                var check = FsCheck.Run(FsCheckTests.ImageOf(fs));
                Assert.True(check.Clean, $"seed {seed}, operation {i}: fs check found {string.Join("; ", check.Problems)}");
            }
        }
        output.WriteLine(string.Join(", ", errors.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}={e.Value}")));
    }
}

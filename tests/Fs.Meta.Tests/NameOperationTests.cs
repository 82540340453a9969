namespace Appliance.Fs.Meta.Tests;

/// <summary>Make, lookup, link, unlink, rmdir and the names they accept.</summary>
public class NameOperationTests
{
    private static readonly Caller Alice = new(1000, 1000, []);
    private static readonly Caller Bob = new(1001, 1001, [50]);

    [Fact]
    public async Task Created_inodes_get_stable_new_numbers_and_are_found_by_name()
    {
        var fs = await MetaFs.NewAsync();
        var d = await fs.MkdirOk(MetaFs.Root, "d");
        var f = await fs.CreateOk(d, "f");
        Assert.NotEqual(d, f);
        Assert.Equal(f, MetaFs.Ok(await fs.Lookup(d, "f")).Inode!.Ino);
        Assert.Equal(MetaFs.Root, MetaFs.Ok(await fs.Lookup(d, "..")).Inode!.Ino);
        Assert.Equal(3u, (await fs.Inode(MetaFs.Root)).Nlink);
        MetaFs.Ok(await fs.Unlink(d, "f"));
        var g = await fs.CreateOk(d, "f");
        Assert.True(g > f, "inode numbers are never reused");
        Assert.Equal(Errno.EEXIST, (await fs.Make(d, "f", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.ENOTDIR, (await fs.Make(g, "x", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.ENOENT, (await fs.Lookup(d, "nothing")).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task Hostile_names_get_the_right_errno_and_change_nothing()
    {
        var fs = await MetaFs.NewAsync();
        var before = fs.Store.Snapshot();
        Assert.Equal(Errno.EINVAL, (await fs.Make(MetaFs.Root, "a/b", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.Make(MetaFs.Root, "a\0b", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await fs.Make(MetaFs.Root, new string('x', 256), ModeBits.IfDir | 0x1ED)).Errno);
        // 255 bytes of UTF-8 in 128 characters is too long too: bytes count, not characters.
        Assert.Equal(Errno.ENAMETOOLONG, (await fs.Make(MetaFs.Root, new string('é', 128), ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.EEXIST, (await fs.Make(MetaFs.Root, "..", ModeBits.IfDir | 0x1ED)).Errno);
        Assert.Equal(Errno.ENOENT, (await fs.Make(MetaFs.Root, "", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await fs.Lookup(MetaFs.Root, new string('x', 256))).Errno);
        Assert.Equal(Errno.ENAMETOOLONG, (await fs.Make(MetaFs.Root, "l", ModeBits.IfLnk, target: new string('t', 4096))).Errno);
        Assert.Equal(before, fs.Store.Snapshot());
        var longest = new string('y', 255);
        await fs.CreateOk(MetaFs.Root, longest);
        MetaFs.Ok(await fs.Lookup(MetaFs.Root, longest));
        fs.Store.Check();
    }

    [Fact]
    public async Task A_create_that_finds_the_file_opens_it_only_with_permission()
    {
        var fs = await MetaFs.NewAsync();
        var f = await fs.CreateOk(MetaFs.Root, "f", 0x1A4); // 0644, root's
        var open = MetaOps.MakeOpenExisting;
        Assert.Equal(f, MetaFs.Ok(await fs.Make(MetaFs.Root, "f", ModeBits.IfReg | 0x1A4, Alice, flags: open | MetaOps.MakeWantRead)).Inode!.Ino);
        Assert.Equal(Errno.EACCES, (await fs.Make(MetaFs.Root, "f", ModeBits.IfReg | 0x1A4, Alice, flags: open | MetaOps.MakeWantWrite)).Errno);
        Assert.Equal(Errno.EEXIST, (await fs.Make(MetaFs.Root, "f", ModeBits.IfReg | 0x1A4, Alice)).Errno);
        await fs.MkdirOk(MetaFs.Root, "d");
        Assert.Equal(Errno.EISDIR, (await fs.Make(MetaFs.Root, "d", ModeBits.IfReg | 0x1A4, null, flags: open)).Errno);
    }

    [Fact]
    public async Task Removed_directory_refuses_new_entries()
    {
        var fs = await MetaFs.NewAsync();
        var d = await fs.MkdirOk(MetaFs.Root, "d");
        MetaFs.Ok(await fs.RmDir(MetaFs.Root, "d"));
        Assert.Equal(Errno.ENOENT, (await fs.Make(d, "x", ModeBits.IfReg | 0x1A4)).Errno);
        Assert.Equal(Errno.ENOENT, (await fs.GetAttr(d)).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task Rmdir_refuses_non_empty_dot_and_files()
    {
        var fs = await MetaFs.NewAsync();
        var d = await fs.MkdirOk(MetaFs.Root, "d");
        await fs.CreateOk(d, "f");
        Assert.Equal(Errno.ENOTEMPTY, (await fs.RmDir(MetaFs.Root, "d")).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.RmDir(d, ".")).Errno);
        Assert.Equal(Errno.ENOTEMPTY, (await fs.RmDir(d, "..")).Errno);
        Assert.Equal(Errno.ENOTDIR, (await fs.RmDir(d, "f")).Errno);
        Assert.Equal(Errno.EISDIR, (await fs.Unlink(MetaFs.Root, "d")).Errno);
        MetaFs.Ok(await fs.Unlink(d, "f"));
        MetaFs.Ok(await fs.RmDir(MetaFs.Root, "d"));
        Assert.Equal(2u, (await fs.Inode(MetaFs.Root)).Nlink);
        fs.Store.Check();
    }

    [Fact]
    public async Task Hard_links_count_and_the_last_unlink_leaves_an_orphan_until_purged()
    {
        var fs = await MetaFs.NewAsync();
        var f = await fs.CreateOk(MetaFs.Root, "f");
        MetaFs.Ok(await fs.Link(f, MetaFs.Root, "g"));
        Assert.Equal(2u, (await fs.Inode(f)).Nlink);
        Assert.Null(MetaFs.Ok(await fs.Unlink(MetaFs.Root, "f")).Released);
        var last = MetaFs.Ok(await fs.Unlink(MetaFs.Root, "g"));
        Assert.Equal(f, last.Released!.Ino);
        Assert.Equal(0u, (await fs.Inode(f)).Nlink); // still there while open
        Assert.Contains(f, fs.Store.Orphans);
        Assert.Equal(Errno.ENOENT, (await fs.Link(f, MetaFs.Root, "again")).Errno);
        fs.Store.Check();
        Assert.Equal([f], MetaFs.Ok(await fs.Run(MetaOp.ListOrphans, null, r => r)).Orphans);
        MetaFs.Ok(await fs.Run(MetaOp.Purge, null, r => r with { Ino = f }));
        Assert.Equal(Errno.ENOENT, (await fs.GetAttr(f)).Errno);
        Assert.Empty(fs.Store.Orphans);
        fs.Store.Check();
        var d = await fs.MkdirOk(MetaFs.Root, "d");
        Assert.Equal(Errno.EPERM, (await fs.Link(d, MetaFs.Root, "dl")).Errno);
    }

    [Fact]
    public async Task An_unlink_purges_the_orphans_riding_along_and_skips_what_is_not_one()
    {
        var fs = await MetaFs.NewAsync();
        var a = await fs.CreateOk(MetaFs.Root, "a");
        var b = await fs.CreateOk(MetaFs.Root, "b");
        var c = await fs.CreateOk(MetaFs.Root, "c");
        MetaFs.Ok(await fs.Unlink(MetaFs.Root, "a"));
        MetaFs.Ok(await fs.Unlink(MetaFs.Root, "b"));
        var inodes = fs.Store.Inodes.Count;
        // a is an orphan; c has a link (skipped); 12345 does not exist (skipped); b goes on the list as the unlink's own.
        var r = MetaFs.Ok(await fs.Run(MetaOp.Unlink, null, q => q with { Ino = MetaFs.Root, Name = "c", Data = MetaOps.EncodePurgeRiders([a, b, 12345]) }));
        Assert.Equal(c, r.Released!.Ino);
        Assert.Equal(Errno.ENOENT, (await fs.GetAttr(a)).Errno);
        Assert.Equal(Errno.ENOENT, (await fs.GetAttr(b)).Errno);
        Assert.Equal([c], fs.Store.Orphans);
        Assert.Equal(inodes - 2, fs.Store.Inodes.Count);
        fs.Store.Check();
        // A failed unlink purges nothing; a rider list that is not whole u64s, or too long, is refused.
        Assert.Equal(Errno.ENOENT, (await fs.Run(MetaOp.Unlink, null, q => q with { Ino = MetaFs.Root, Name = "nope", Data = MetaOps.EncodePurgeRiders([c]) })).Errno);
        Assert.Contains(c, fs.Store.Orphans);
        Assert.Equal(Errno.EINVAL, (await fs.Run(MetaOp.Unlink, null, q => q with { Ino = MetaFs.Root, Name = "x", Data = [1, 2, 3] })).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.Run(MetaOp.Unlink, null, q => q with { Ino = MetaFs.Root, Name = "x", Data = MetaOps.EncodePurgeRiders([.. Enumerable.Range(1, 65).Select(i => (ulong)i)]) })).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task Permissions_come_from_uid_gid_and_groups()
    {
        var fs = await MetaFs.NewAsync(rootMode: 0x1ED); // 0755, root's
        Assert.Equal(Errno.EACCES, (await fs.Make(MetaFs.Root, "x", ModeBits.IfReg | 0x1A4, Alice)).Errno);
        var shared = await fs.MkdirOk(MetaFs.Root, "shared", 0x1F8); // 0770
        MetaFs.Ok(await fs.SetAttr(shared, AttrMask.Gid, gid: 50));
        Assert.Equal(Errno.EACCES, (await fs.Make(shared, "x", ModeBits.IfReg | 0x1A4, Alice)).Errno);
        var f = MetaFs.Ok(await fs.Make(shared, "x", ModeBits.IfReg | 0x1A4, Bob)).Inode!; // Bob is in group 50
        Assert.Equal(1001u, f.Uid);
        Assert.Equal(1001u, f.Gid);
        Assert.Equal(Errno.EACCES, (await fs.Lookup(shared, "x", Alice)).Errno);
        // Only the owner (or root) chmods; only root gives a file away; the owner may pick one of its groups.
        Assert.Equal(Errno.EPERM, (await fs.SetAttr(f.Ino, AttrMask.Mode, Alice, mode: 0x1FF)).Errno);
        Assert.Equal(Errno.EPERM, (await fs.SetAttr(f.Ino, AttrMask.Uid, Bob, uid: 1000)).Errno);
        Assert.Equal(Errno.EPERM, (await fs.SetAttr(f.Ino, AttrMask.Gid, Bob, gid: 7)).Errno);
        Assert.Equal(50u, MetaFs.Ok(await fs.SetAttr(f.Ino, AttrMask.Gid, Bob, gid: 50)).Inode!.Gid);
        MetaFs.Ok(await fs.SetAttr(f.Ino, AttrMask.Mode, Bob, mode: 0xDED)); // 06755
        Assert.Equal(ModeBits.IfReg | 0xDED, (await fs.Inode(f.Ino)).Mode);
        // chown clears set-user-id, and set-group-id on a group-executable file.
        Assert.Equal(ModeBits.IfReg | 0x1ED, MetaFs.Ok(await fs.SetAttr(f.Ino, AttrMask.Uid, uid: 1000)).Inode!.Mode);
        // Truncate needs write permission, unless by an open handle.
        Assert.Equal(Errno.EACCES, (await fs.SetAttr(f.Ino, AttrMask.Size, Bob, size: 1)).Errno);
        MetaFs.Ok(await fs.SetAttr(f.Ino, AttrMask.Size | AttrMask.ByHandle, Bob, size: 1));
        fs.Store.Check();
    }

    [Fact]
    public async Task Setgid_directories_hand_down_their_group()
    {
        var fs = await MetaFs.NewAsync();
        var d = await fs.MkdirOk(MetaFs.Root, "d", 0x5FF); // 02777
        MetaFs.Ok(await fs.SetAttr(d, AttrMask.Gid, gid: 50));
        MetaFs.Ok(await fs.SetAttr(d, AttrMask.Mode, mode: 0x5FF));
        var f = MetaFs.Ok(await fs.Make(d, "f", ModeBits.IfReg | 0x5A4, Alice)).Inode!; // asks for setgid, not in 50
        Assert.Equal(50u, f.Gid);
        Assert.Equal(0u, f.Mode & ModeBits.IsGid);
        var sub = MetaFs.Ok(await fs.Make(d, "sub", ModeBits.IfDir | 0x1ED, Alice)).Inode!;
        Assert.Equal(50u, sub.Gid);
        Assert.NotEqual(0u, sub.Mode & ModeBits.IsGid);
    }

    [Fact]
    public async Task Sticky_directories_let_only_owners_remove_or_rename()
    {
        var fs = await MetaFs.NewAsync();
        var tmp = await fs.MkdirOk(MetaFs.Root, "tmp", 0x3FF); // 01777
        MetaFs.Ok(await fs.Make(tmp, "alices", ModeBits.IfReg | 0x1B6, Alice));
        Assert.Equal(Errno.EPERM, (await fs.Unlink(tmp, "alices", Bob)).Errno);
        Assert.Equal(Errno.EPERM, (await fs.Rename(tmp, "alices", tmp, "bobs", 0, Bob)).Errno);
        MetaFs.Ok(await fs.Make(tmp, "bobs", ModeBits.IfReg | 0x1B6, Bob));
        Assert.Equal(Errno.EPERM, (await fs.Rename(tmp, "bobs", tmp, "alices", 0, Bob)).Errno); // would replace Alice's
        MetaFs.Ok(await fs.Unlink(tmp, "alices", Alice));
        MetaFs.Ok(await fs.Unlink(tmp, "bobs", Caller.Root));
        fs.Store.Check();
    }

    [Fact]
    public async Task Symlinks_and_device_nodes_keep_what_they_were_made_with()
    {
        var fs = await MetaFs.NewAsync();
        var l = MetaFs.Ok(await fs.Make(MetaFs.Root, "l", ModeBits.IfLnk, target: "some/where")).Inode!;
        Assert.Equal("some/where", l.Target);
        Assert.Equal(10UL, l.StatSize);
        Assert.Equal(ModeBits.IfLnk | 0x1FF, l.Mode);
        var dev = MetaFs.Ok(await fs.Run(MetaOp.Make, null, r => r with { Ino = MetaFs.Root, Name = "null", Mode = ModeBits.IfChr | 0x1B6, Rdev = 0x103 })).Inode!;
        Assert.Equal(0x103u, dev.Rdev);
        Assert.Equal(Errno.EINVAL, (await fs.Make(MetaFs.Root, "bad", 0xE000 | 0x1A4)).Errno);
        Assert.Equal(Errno.EINVAL, (await fs.SetAttr(l.Ino, AttrMask.Size, size: 0)).Errno);
        fs.Store.Check();
    }

    [Fact]
    public async Task Xattrs_follow_flags_namespaces_and_permissions()
    {
        var fs = await MetaFs.NewAsync();
        var f = await fs.CreateOk(MetaFs.Root, "f", 0x1A4);
        Task<MetaReply> SetX(string name, string value, uint flags = 0, Caller? c = null) =>
            fs.Run(MetaOp.SetXattr, c, r => r with { Ino = f, Name = name, Data = System.Text.Encoding.UTF8.GetBytes(value), Flags = flags });
        MetaFs.Ok(await SetX("user.a", "1"));
        Assert.Equal(Errno.EEXIST, (await SetX("user.a", "2", MetaOps.XattrCreate)).Errno);
        Assert.Equal(Errno.ENODATA, (await SetX("user.b", "2", MetaOps.XattrReplace)).Errno);
        Assert.Equal(Errno.EACCES, (await SetX("user.c", "2", 0, Alice)).Errno);
        Assert.Equal(Errno.EPERM, (await SetX("trusted.t", "2", 0, Alice)).Errno);
        Assert.Equal(Errno.EOPNOTSUPP, (await SetX("bogus.x", "2")).Errno);
        Assert.Equal(Errno.ERANGE, (await SetX("user." + new string('n', 251), "2")).Errno);
        MetaFs.Ok(await SetX("trusted.t", "root's"));
        var seen = MetaFs.Ok(await fs.Run(MetaOp.GetXattrs, Alice, r => r with { Ino = f, Name = "user.a" })).Inode!;
        Assert.Equal(["user.a"], seen.Xattrs.Keys);
        Assert.Empty((await fs.Inode(f)).Xattrs); // getattr carries no xattrs
        Assert.Equal(Errno.ENODATA, (await fs.Run(MetaOp.RemoveXattr, null, r => r with { Ino = f, Name = "user.zz" })).Errno);
        MetaFs.Ok(await fs.Run(MetaOp.RemoveXattr, null, r => r with { Ino = f, Name = "user.a" }));
        var l = MetaFs.Ok(await fs.Make(MetaFs.Root, "l", ModeBits.IfLnk, target: "f")).Inode!;
        Assert.Equal(Errno.EPERM, (await fs.Run(MetaOp.SetXattr, null, r => r with { Ino = l.Ino, Name = "user.a", Data = [1] })).Errno);
        Assert.Equal(Errno.ENOSPC, (await fs.Run(MetaOp.SetXattr, null, r => r with { Ino = f, Name = "user.big", Data = new byte[61 << 10] })).Errno);
    }

    [Fact]
    public async Task Writes_grow_the_size_and_never_shrink_it()
    {
        var fs = await MetaFs.NewAsync();
        var f = await fs.CreateOk(MetaFs.Root, "f");
        var t = new MetaTime(123, 456);
        MetaFs.Ok(await fs.Run(MetaOp.Written, null, r => r with { Ino = f, Size = 5000, Mtime = t }));
        MetaFs.Ok(await fs.Run(MetaOp.Written, null, r => r with { Ino = f, Size = 10, Mtime = t }));
        var n = await fs.Inode(f);
        Assert.Equal(5000UL, n.Size);
        Assert.Equal(t, n.Mtime);
        Assert.Equal(Errno.EFBIG, (await fs.Run(MetaOp.Written, null, r => r with { Ino = f, Size = MetaOps.MaxFileSize + 1 })).Errno);
    }

    [Fact]
    public async Task Readdir_pages_in_name_order_with_attributes_when_asked()
    {
        var fs = await MetaFs.NewAsync();
        var names = Enumerable.Range(0, 300).Select(i => $"n{i:D4}").ToList();
        foreach (var n in names)
        {
            await fs.CreateOk(MetaFs.Root, n);
        }
        var seen = new List<string>();
        var after = "";
        while (true)
        {
            var page = MetaFs.Ok(await fs.Run(MetaOp.ReadDir, null, r => r with { Ino = MetaFs.Root, Name = after, Limit = 128, Flags = 1 }));
            Assert.All(page.Entries, e => Assert.Equal(e.Entry.Ino, e.Inode!.Ino));
            seen.AddRange(page.Entries.Select(e => e.Name));
            if (!page.More)
            {
                break;
            }
            after = page.Entries[^1].Name;
        }
        Assert.Equal(names, seen);
    }

    [Fact]
    public async Task Appends_get_disjoint_ranges_at_the_end_and_only_regular_files_take_them()
    {
        var fs = await MetaFs.NewAsync();
        var f = await fs.CreateOk(MetaFs.Root, "log");
        MetaFs.Ok(await fs.Run(MetaOp.Written, null, r => r with { Ino = f, Size = 100, Mtime = new MetaTime(5, 0) }));
        var first = MetaFs.Ok(await fs.Run(MetaOp.Append, null, r => r with { Ino = f, Size = 10, Mtime = new MetaTime(6, 0) }));
        var second = MetaFs.Ok(await fs.Run(MetaOp.Append, null, r => r with { Ino = f, Size = 7, Mtime = new MetaTime(7, 0) }));
        Assert.Equal(110UL, first.Inode!.Size); // this append's range: [100, 110)
        Assert.Equal(117UL, second.Inode!.Size); // [110, 117)
        Assert.Equal(new MetaTime(7, 0), (await fs.Inode(f)).Mtime);
        var d = await fs.MkdirOk(MetaFs.Root, "dir");
        Assert.Equal(Errno.EISDIR, (await fs.Run(MetaOp.Append, null, r => r with { Ino = d, Size = 1 })).Errno);
        Assert.Equal(Errno.EFBIG, (await fs.Run(MetaOp.Append, null, r => r with { Ino = f, Size = MetaOps.MaxFileSize })).Errno);
        fs.Store.Check();
    }
}

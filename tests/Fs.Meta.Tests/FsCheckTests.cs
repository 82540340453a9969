namespace Appliance.Fs.Meta.Tests;

/// <summary>`fs check`'s pure part: a filesystem made by the operations is clean; each kind of damage is found, named,
/// and repaired so that every invariant (<see cref="MemoryMetaSource.Check"/>) holds and a second check is clean.</summary>
public class FsCheckTests
{
    private const int Stripe = 4 << 20;

    internal static FsImage ImageOf(MetaFs fs, IEnumerable<DataObject>? data = null) => new()
    {
        Super = fs.Store.Super,
        Inodes = new Dictionary<ulong, byte[]>(fs.Store.Inodes),
        Entries = fs.Store.Entries.ToDictionary(kv => kv.Key, kv => new SortedDictionary<string, byte[]>(kv.Value, StringComparer.Ordinal)),
        Orphans = [.. fs.Store.Orphans],
        Data = [.. data ?? []],
        StripeSize = Stripe,
        Now = new MetaTime(1_700_000_000, 0),
    };

    /// <summary>A small tree: directories, files, a hard link, a symlink, a rename, an unlinked file kept open (an
    /// orphan).</summary>
    private static async Task<(MetaFs Fs, ulong Dir, ulong File, ulong Sub)> TreeAsync()
    {
        var fs = await MetaFs.NewAsync();
        var dir = await fs.MkdirOk(MetaFs.Root, "dir");
        var sub = await fs.MkdirOk(dir, "sub");
        var file = await fs.CreateOk(dir, "file");
        MetaFs.Ok(await fs.Link(file, sub, "hard"));
        MetaFs.Ok(await fs.Make(MetaFs.Root, "link", ModeBits.IfLnk | 0x1FF, target: "dir/file"));
        var gone = await fs.CreateOk(MetaFs.Root, "gone");
        MetaFs.Ok(await fs.Rename(MetaFs.Root, "gone", sub, "moved"));
        MetaFs.Ok(await fs.Unlink(sub, "moved"));
        Assert.Contains(gone, fs.Store.Orphans);
        MetaFs.Ok(await fs.SetAttr(file, AttrMask.Size, size: 10_000_000));
        fs.Store.Check();
        return (fs, dir, file, sub);
    }

    private static void RepairAndRecheck(MetaFs fs, FsCheckResult found, List<DataObject> data)
    {
        fs.Store.Apply(found.Repair);
        fs.Store.Check();
        foreach (var (ino, stripe) in found.RemoveData)
        {
            data.RemoveAll(d => d.Ino == ino && d.Stripe == stripe);
        }
        foreach (var (ino, stripe, size) in found.TruncateData)
        {
            var i = data.FindIndex(d => d.Ino == ino && d.Stripe == stripe);
            data[i] = data[i] with { Size = size };
        }
        var again = FsCheck.Run(ImageOf(fs, data));
        Assert.True(again.Clean, "after the repair: " + string.Join("; ", again.Problems));
    }

    [Fact]
    public async Task A_filesystem_made_by_the_operations_is_clean()
    {
        var (fs, _, file, _) = await TreeAsync();
        var result = FsCheck.Run(ImageOf(fs, [new DataObject(file, 0, Stripe), new DataObject(file, 2, 10_000_000 - 2 * Stripe)]));
        Assert.True(result.Clean, string.Join("; ", result.Problems));
        Assert.True(result.Repair.IsEmpty);
    }

    [Fact]
    public async Task An_entry_naming_no_inode_is_removed_and_the_directory_counts_fixed()
    {
        var (fs, dir, _, _) = await TreeAsync();
        fs.Store.Entries[dir]["ghost"] = new Dentry(9999, ModeBits.IfReg).Encode();
        var found = FsCheck.Run(ImageOf(fs));
        Assert.Contains(found.Problems, p => p.Contains("'ghost'") && p.Contains("9999"));
        RepairAndRecheck(fs, found, []);
        Assert.False(fs.Store.Entries[dir].ContainsKey("ghost"));
    }

    [Fact]
    public async Task Wrong_link_counts_wrong_types_and_a_wrong_superblock_are_fixed()
    {
        var (fs, dir, file, sub) = await TreeAsync();
        var n = Inode.Decode(fs.Store.Inodes[file]);
        n.Nlink = 7;
        fs.Store.Inodes[file] = n.Encode();
        var d = Inode.Decode(fs.Store.Inodes[dir]);
        (d.Nlink, d.Children, d.Parent) = (9, 42, sub);
        fs.Store.Inodes[dir] = d.Encode();
        fs.Store.Entries[dir]["file"] = new Dentry(file, ModeBits.IfDir).Encode();
        var s = Superblock.Decode(fs.Store.Super!);
        (s.Inodes, s.NextIno) = (1, 2);
        fs.Store.Super = s.Encode();
        var found = FsCheck.Run(ImageOf(fs));
        Assert.Contains(found.Problems, p => p.Contains($"inode {file} has link count 7"));
        Assert.Contains(found.Problems, p => p.Contains($"directory {dir} has link count 9"));
        Assert.Contains(found.Problems, p => p.Contains($"directory {dir} counts 42 entries"));
        Assert.Contains(found.Problems, p => p.Contains($"directory {dir} records parent {sub}"));
        Assert.Contains(found.Problems, p => p.Contains("'file'") && p.Contains("rewritten"));
        Assert.Contains(found.Problems, p => p.Contains("the superblock counts 1 inodes"));
        Assert.Contains(found.Problems, p => p.Contains("next inode number 2"));
        RepairAndRecheck(fs, found, []);
    }

    [Fact]
    public async Task An_unreachable_file_and_a_directory_cycle_cut_off_from_the_root_go_to_lost_and_found()
    {
        var (fs, dir, file, sub) = await TreeAsync();
        var lone = await fs.CreateOk(MetaFs.Root, "lone");
        fs.Store.Entries[MetaFs.Root].Remove("lone");
        // dir/sub becomes a cycle: sub names dir, root no longer does.
        fs.Store.Entries[MetaFs.Root].Remove("dir");
        fs.Store.Entries[sub]["loop"] = new Dentry(dir, ModeBits.IfDir).Encode();
        var found = FsCheck.Run(ImageOf(fs));
        Assert.Contains(found.Problems, p => p.StartsWith("made /lost+found", StringComparison.Ordinal));
        Assert.Contains(found.Problems, p => p.Contains($"inode {lone} is reached from no directory: linked as #{lone}"));
        Assert.Contains(found.Problems, p => p.Contains($"directory {dir} is reached from no directory"));
        RepairAndRecheck(fs, found, []);
        var lf = Dentry.Decode(fs.Store.Entries[MetaFs.Root][FsCheck.LostFound]).Ino;
        Assert.Equal([$"#{dir}", $"#{lone}"], fs.Store.Entries[lf].Keys.Order(StringComparer.Ordinal));
        Assert.False(fs.Store.Entries[sub].ContainsKey("loop"));
        Assert.True(fs.Store.Entries[dir].ContainsKey("file"));
        _ = file;
    }

    [Fact]
    public async Task A_bad_orphan_list_and_an_inode_that_does_not_decode_are_fixed()
    {
        var (fs, dir, file, _) = await TreeAsync();
        fs.Store.Orphans.Add(file);
        fs.Store.Orphans.Add(8888);
        var broken = await fs.CreateOk(dir, "broken");
        fs.Store.Inodes[broken] = [1, 2, 3];
        var found = FsCheck.Run(ImageOf(fs));
        Assert.Contains(found.Problems, p => p.Contains($"inode {file} is on the orphan list but named"));
        Assert.Contains(found.Problems, p => p.Contains("orphan 8888 is not an inode"));
        Assert.Contains(found.Problems, p => p.Contains($"inode {broken}: its record does not decode"));
        Assert.Contains(found.Problems, p => p.Contains("'broken'") && p.Contains("does not exist"));
        RepairAndRecheck(fs, found, []);
        Assert.False(fs.Store.Inodes.ContainsKey(broken));
    }

    [Fact]
    public async Task Data_of_no_file_or_past_a_files_size_is_removed_or_cut()
    {
        var (fs, dir, file, _) = await TreeAsync();
        var data = new List<DataObject>
        {
            new(file, 0, Stripe),
            new(file, 2, Stripe), // the file ends 10,000,000 - 2 stripes into stripe 2
            new(file, 3, 100), // past the end
            new(777, 0, 5), // no such inode
            new(dir, 0, 5), // a directory has no data
        };
        var found = FsCheck.Run(ImageOf(fs, data));
        Assert.Equal(new[] { (file, 3L), (777UL, 0L), (dir, 0L) }.Order(), found.RemoveData.Order());
        Assert.Equal([(file, 2L, 10_000_000UL - 2 * Stripe)], found.TruncateData);
        RepairAndRecheck(fs, found, data);
    }
}

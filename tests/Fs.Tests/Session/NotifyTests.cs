using Appliance.Fs.Api;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>Invalidation notifications: what a filesystem shared by several mounts uses to keep each kernel's
/// caches coherent with changes made elsewhere (here: through the API, behind the kernel's back).</summary>
public class NotifyTests
{
    private static readonly FuseContext Elsewhere = new(0, 0, 0, 0);

    [Fact]
    public async Task Inval_inode_drops_cached_attributes_and_data()
    {
        var fs = new MemoryFileSystem { EntryTimeout = TimeSpan.FromHours(1), AttrTimeout = TimeSpan.FromHours(1) };
        await using var m = TestMount.Start(fs);
        File.WriteAllText(m.P("f"), "abc");
        Assert.Equal("abc", File.ReadAllText(m.P("f")));
        var ino = Posix.lstatx(m.P("f")).stx_ino;

        var open = await fs.OpenAsync(Elsewhere, ino, Constants.O_RDWR, default);
        await fs.WriteAsync(Elsewhere, ino, open.Value.Handle, 0, "XYZ-longer"u8.ToArray(), default);
        await fs.ReleaseAsync(Elsewhere, ino, open.Value.Handle, default);
        Assert.Equal(3UL, Posix.lstatx(m.P("f")).stx_size); // the kernel still trusts its cache

        Assert.True(m.Session.NotifyInvalInode(ino));
        Assert.Equal(10UL, Posix.lstatx(m.P("f")).stx_size);
        Assert.Equal("XYZ-longer", File.ReadAllText(m.P("f")));
        Assert.False(m.Session.NotifyInvalInode(999_999)); // not cached: ENOENT from the kernel
    }

    [Fact]
    public async Task Inval_entry_drops_a_cached_name()
    {
        var fs = new MemoryFileSystem { EntryTimeout = TimeSpan.FromHours(1), AttrTimeout = TimeSpan.FromHours(1) };
        await using var m = TestMount.Start(fs);
        File.WriteAllText(m.P("old"), "x");
        Assert.True(File.Exists(m.P("old")));
        Assert.True((await fs.RenameAsync(Elsewhere, 1, "old", 1, "new", RenameFlags.None, default)).IsOk);
        Assert.True(File.Exists(m.P("old"))); // cached name

        Assert.True(m.Session.NotifyInvalEntry(1, "old"));
        Assert.False(File.Exists(m.P("old")));
        Assert.Equal("x", File.ReadAllText(m.P("new")));
    }
}

using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>rename(2) and renameat2(2) semantics: replace, NOREPLACE, EXCHANGE, directories, and refusals.</summary>
public class RenameTests
{
    [Fact]
    public async Task Rename_moves_and_replaces()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("a"), "A");
        File.WriteAllText(m.P("b"), "B");
        Directory.CreateDirectory(m.P("d1/sub"));
        Directory.CreateDirectory(m.P("d2"));
        Shell.Ok($"mv {m.P("a")} {m.P("d1/a2")}");
        Assert.Equal("A", File.ReadAllText(m.P("d1/a2")));
        Assert.False(File.Exists(m.P("a")));
        Posix.renameat2(m.P("b"), m.P("d1/a2"), 0); // replaces
        Assert.Equal("B", File.ReadAllText(m.P("d1/a2")));
        Assert.False(File.Exists(m.P("b")));
        // Moving a directory between parents moves its ".." link.
        Assert.Equal(3U, Posix.lstatx(m.P("d1")).stx_nlink);
        Posix.renameat2(m.P("d1/sub"), m.P("d2/sub"), 0);
        Assert.Equal(2U, Posix.lstatx(m.P("d1")).stx_nlink);
        Assert.Equal(3U, Posix.lstatx(m.P("d2")).stx_nlink);
        Assert.Equal(Posix.lstatx(m.P("d2")).stx_ino, Posix.lstatx(m.P("d2/sub/..")).stx_ino);
        // An empty directory may replace an empty directory, not a file and not a non-empty one.
        Directory.CreateDirectory(m.P("empty"));
        Assert.Equal(39, Errnos.Of(() => Posix.renameat2(m.P("empty"), m.P("d2"), 0))); // ENOTEMPTY
        Assert.Equal(Errno.ENOTDIR, Errnos.Of(() => Posix.renameat2(m.P("empty"), m.P("d1/a2"), 0)));
        Assert.Equal(Errno.EISDIR, Errnos.Of(() => Posix.renameat2(m.P("d1/a2"), m.P("empty"), 0)));
        Assert.Equal(Errno.EINVAL, Errnos.Of(() => Posix.renameat2(m.P("d2"), m.P("d2/sub/inside"), 0)));
        Assert.Equal(Errno.ENOENT, Errnos.Of(() => Posix.renameat2(m.P("missing"), m.P("x"), 0)));
        Posix.renameat2(m.P("empty"), m.P("d2/sub"), 0);
        Assert.False(Directory.Exists(m.P("empty")));
        Assert.Equal(3U, Posix.lstatx(m.P("d2")).stx_nlink);
    }

    [Fact]
    public async Task Noreplace_refuses_an_existing_target()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("a"), "A");
        File.WriteAllText(m.P("b"), "B");
        Assert.Equal(Errno.EEXIST, Errnos.Of(() => Posix.renameat2(m.P("a"), m.P("b"), Posix.RENAME_NOREPLACE)));
        Assert.Equal("A", File.ReadAllText(m.P("a")));
        Assert.Equal("B", File.ReadAllText(m.P("b")));
        Posix.renameat2(m.P("a"), m.P("c"), Posix.RENAME_NOREPLACE);
        Assert.Equal("A", File.ReadAllText(m.P("c")));
        Assert.False(File.Exists(m.P("a")));
    }

    [Fact]
    public async Task Exchange_swaps_two_names_atomically()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("file"), "F");
        Directory.CreateDirectory(m.P("dir/child"));
        Directory.CreateDirectory(m.P("other"));
        var fileIno = Posix.lstatx(m.P("file")).stx_ino;
        var dirIno = Posix.lstatx(m.P("dir")).stx_ino;
        Posix.renameat2(m.P("file"), m.P("dir"), Posix.RENAME_EXCHANGE);
        Assert.Equal(fileIno, Posix.lstatx(m.P("dir")).stx_ino);
        Assert.Equal(dirIno, Posix.lstatx(m.P("file")).stx_ino);
        Assert.Equal("F", File.ReadAllText(m.P("dir")));
        Assert.True(Directory.Exists(m.P("file/child")));
        // Across directories: a directory and a file trade parents, and the parents' link counts follow.
        Posix.renameat2(m.P("file"), m.P("other"), Posix.RENAME_EXCHANGE); // two directories: counts unchanged
        File.WriteAllText(m.P("other/f2"), "2");
        var rootLinks = Posix.lstatx(m.Path).stx_nlink;
        Posix.renameat2(m.P("file"), m.P("other/f2"), Posix.RENAME_EXCHANGE); // dir "file" moves into "other"
        Assert.Equal(rootLinks - 1, Posix.lstatx(m.Path).stx_nlink);
        Assert.Equal("2", File.ReadAllText(m.P("file")));
        Assert.True(Directory.Exists(m.P("other/f2")));
        Assert.Equal(Errno.ENOENT, Errnos.Of(() => Posix.renameat2(m.P("file"), m.P("nothing"), Posix.RENAME_EXCHANGE)));
        Assert.Equal(Errno.EINVAL, Errnos.Of(() => Posix.renameat2(m.P("file"), m.P("dir"), Posix.RENAME_EXCHANGE | Posix.RENAME_NOREPLACE)));
    }
}

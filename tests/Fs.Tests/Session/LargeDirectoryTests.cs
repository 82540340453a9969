using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

public class LargeDirectoryTests
{
    [Fact]
    public async Task Ls_lists_a_10000_entry_directory_completely_once()
    {
        await using var m = TestMount.Start();
        const int Count = 10_000;
        for (var i = 0; i < Count; i++)
        {
            var fd = Posix.open(m.P($"entry-{i:D5}"), Constants.O_WRONLY | Constants.O_CREAT, 0x1A4);
            Posix.close(fd);
        }
        var lines = Shell.Ok($"ls -l {m.Path}").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("total", lines[0]);
        var names = lines.Skip(1).Select(l => l[(l.LastIndexOf(' ') + 1)..]).ToList();
        Assert.Equal(Count, names.Count);
        Assert.Equal(Count, names.Distinct().Count());
        Assert.All(lines.Skip(1), l => Assert.StartsWith("-rw-r--r-- 1 root root 0 ", l));
        // A listing with removals in the middle neither repeats nor skips the untouched entries.
        var seen = new List<string>();
        var removed = 0;
        foreach (var path in Directory.EnumerateFiles(m.Path))
        {
            seen.Add(Path.GetFileName(path));
            if (seen.Count % 1000 == 0)
            {
                File.Delete(m.P($"entry-{Count - 1 - removed:D5}"));
                removed++;
            }
        }
        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.True(seen.Count >= Count - removed);
        Assert.Equal(Count - removed, Directory.GetFiles(m.Path).Length);
    }
}

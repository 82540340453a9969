using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;

namespace Appliance.Crush.Tests;

/// <summary>One line of cases.tsv.</summary>
public sealed record VectorCase(string Id, string MapPath, int RuleId, string RuleName, int NumRep, int MinX, int MaxX, IReadOnlyList<(int Osd, string Value)> Weights)
{
    public override string ToString() => Id;
}

/// <summary>
/// The reference vectors of tests/Crush.Tests/vectors: crush-vectors.tar.xz, unpacked (with `tar -xJf`) into the
/// test binary's folder on first use, and again whenever the archive changes (its SHA-256 is kept beside the
/// unpacked files). A missing archive or a failed unpack is a test failure, never a skip.
/// </summary>
public static class Vectors
{
    private static readonly Lazy<string> DirLazy = new(Locate);

    public static string Dir => DirLazy.Value;

    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Appliance.sln")))
                {
                    return dir.FullName;
                }
            }
            throw new InvalidOperationException($"no Appliance.sln above {AppContext.BaseDirectory}; run the tests from the repository");
        }
    }

    private static string Locate()
    {
        var archive = Path.Combine(RepoRoot, "tests", "Crush.Tests", "vectors", "crush-vectors.tar.xz");
        if (!File.Exists(archive))
        {
            throw new InvalidOperationException($"the CRUSH reference vectors are missing: expected {archive}. These tests cannot pass without them.");
        }
        var hash = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(archive)));
        var dir = Path.Combine(AppContext.BaseDirectory, "crush-vectors");
        var stamp = Path.Combine(dir, ".archive-sha256");
        if (File.Exists(stamp) && File.ReadAllText(stamp) == hash)
        {
            return dir;
        }
        // Unpacked beside its final place and renamed into it, so an interrupted unpack is never taken for a whole one.
        var staging = dir + ".unpacking-" + Environment.ProcessId;
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }
        Directory.CreateDirectory(staging);
        var psi = new ProcessStartInfo("tar") { RedirectStandardError = true };
        foreach (var arg in new[] { "-xJf", archive, "-C", staging })
        {
            psi.ArgumentList.Add(arg);
        }
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run tar to unpack {archive} ({e.Message}); install tar and xz-utils (scripts/test-packages.txt)", e);
        }
        using (p)
        {
            var stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
            {
                throw new InvalidOperationException($"tar -xJf {archive} failed (exit {p.ExitCode}): {stderr.Trim()}; it needs xz-utils (scripts/test-packages.txt)");
            }
        }
        File.WriteAllText(Path.Combine(staging, ".archive-sha256"), hash);
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
        Directory.Move(staging, dir);
        if (!File.Exists(Path.Combine(dir, "cases.tsv")))
        {
            throw new InvalidOperationException($"{archive} holds no cases.tsv");
        }
        return dir;
    }

    public static string PathOf(string relative) => Path.Combine(Dir, relative);

    public static IReadOnlyList<VectorCase> Cases { get; } = LoadCases();

    private static List<VectorCase> LoadCases()
    {
        var list = new List<VectorCase>();
        foreach (var line in File.ReadLines(Path.Combine(Dir, "cases.tsv")))
        {
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var f = line.Split('\t');
            var weights = new List<(int, string)>();
            if (f[7] != "-")
            {
                foreach (var pair in f[7].Split(','))
                {
                    var parts = pair.Split(':');
                    weights.Add((int.Parse(parts[0], CultureInfo.InvariantCulture), parts[1]));
                }
            }
            list.Add(new VectorCase(
                f[0], f[1], int.Parse(f[2], CultureInfo.InvariantCulture), f[3], int.Parse(f[4], CultureInfo.InvariantCulture),
                int.Parse(f[5], CultureInfo.InvariantCulture), int.Parse(f[6], CultureInfo.InvariantCulture), weights));
        }
        if (list.Count == 0)
        {
            throw new InvalidOperationException("cases.tsv lists no case");
        }
        return list;
    }

    public static TheoryData<string> CaseIds()
    {
        var data = new TheoryData<string>();
        foreach (var c in Cases)
        {
            data.Add(c.Id);
        }
        return data;
    }

    public static TheoryData<string> MapNames()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(Dir, "maps"), "*.txt").OrderBy(f => f, StringComparer.Ordinal))
        {
            data.Add(Path.GetFileNameWithoutExtension(f));
        }
        return data;
    }

    public static VectorCase Case(string id) => Cases.Single(c => c.Id == id);

    /// <summary>The expected lines, with trailing spaces and blank lines removed (as check.sh compares).</summary>
    public static string[] Expected(string caseId) =>
        File.ReadAllLines(Path.Combine(Dir, "expected", caseId + ".txt")).Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToArray();
}

using System.Globalization;

namespace Appliance.Crush.Tests;

/// <summary>One line of cases.tsv.</summary>
public sealed record VectorCase(string Id, string MapPath, int RuleId, string RuleName, int NumRep, int MinX, int MaxX, IReadOnlyList<(int Osd, string Value)> Weights)
{
    public override string ToString() => Id;
}

/// <summary>
/// Finds the shared reference vectors at ../shared/crush-vectors relative to the repository root (the folder that
/// holds Appliance.sln). Missing vectors are a test failure, never a skip.
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
        var dir = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "crush-vectors"));
        if (!File.Exists(Path.Combine(dir, "cases.tsv")))
        {
            throw new InvalidOperationException(
                $"the CRUSH reference vectors are missing: expected {dir}/cases.tsv (../shared/crush-vectors next to the repository). " +
                "These tests need them; they cannot pass without them.");
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

using System.Diagnostics;
using Appliance.Cli;
using Appliance.Cli.Common;

namespace Appliance.Crush.Tests;

/// <summary>`appliance crush test` reproduces crushtool's output for every public case; errors give exit codes.</summary>
public class CliTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await CliApp.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string[] CaseArgs(VectorCase c, bool byName)
    {
        var args = new List<string>
        {
            "crush", "test", Vectors.PathOf(c.MapPath), "--rule", byName ? c.RuleName : c.RuleId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--num-rep", c.NumRep.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--min-x", c.MinX.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--max-x", c.MaxX.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var (osd, value) in c.Weights)
        {
            args.AddRange(["--weight", osd.ToString(System.Globalization.CultureInfo.InvariantCulture), value]);
        }
        return [.. args];
    }

    private static string[] Lines(string text) => text.Split('\n').Select(l => l.TrimEnd('\r', ' ')).Where(l => l.Length > 0).ToArray();

    [Theory]
    [MemberData(nameof(Vectors.CaseIds), MemberType = typeof(Vectors))]
    public async Task CrushTest_InProcess_MatchesExpected(string caseId)
    {
        var c = Vectors.Case(caseId);
        // Alternate rule by id and by name: both must work.
        var (code, output, err) = await RunAsync(CaseArgs(c, byName: caseId.GetHashCode(StringComparison.Ordinal) % 2 == 0));
        Assert.True(code == ExitCodes.Ok, err);
        var actual = Lines(output);
        var expected = Vectors.Expected(caseId);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
            {
                Assert.Fail($"{caseId}: line {i + 1}: expected '{expected[i]}', got '{actual[i]}'");
            }
        }
    }

    private static string ApplianceDll()
    {
        // The program built next to this test (same configuration).
        var config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(Vectors.RepoRoot, "node", "Cli", "bin", config, "net10.0", "appliance.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing; build node/Cli first");
        return dll;
    }

    /// <summary>
    /// check.sh against the built program. By default a subset (one map's cases: dotnet start-up per case is
    /// slow on 2 shared cores); APPLIANCE_SOAK=1 runs all cases. The in-process test above covers every case.
    /// </summary>
    [Fact]
    public async Task CheckSh_AgainstBuiltProgram()
    {
        var full = TestSeed.Soak;
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Vectors.PathOf("check.sh"));
        if (!full)
        {
            psi.ArgumentList.Add("-f");
            psi.ArgumentList.Add("^(a_1host_3osd__r[02]|d_device_classes__r2)");
        }
        psi.ArgumentList.Add("-t");
        psi.ArgumentList.Add("120");
        psi.ArgumentList.Add("--");
        psi.ArgumentList.Add("dotnet");
        psi.ArgumentList.Add(ApplianceDll());
        psi.ArgumentList.Add("crush");
        psi.ArgumentList.Add("test");
        using var p = Process.Start(psi)!;
        var stdoutTask = p.StandardOutput.ReadToEndAsync();
        var stderrTask = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(full ? 30 : 3));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("check.sh did not finish in time");
        }
        var stdout = await stdoutTask;
        var last = stdout.TrimEnd().Split('\n')[^1];
        Assert.True(p.ExitCode == 0, stdout + await stderrTask);
        Assert.Matches(@"^\d+ passed, 0 failed$", last);
        Assert.False(last.StartsWith("0 passed", StringComparison.Ordinal), "check.sh ran no case");
    }

    [Fact]
    public async Task Errors_MapToExitCodes()
    {
        var map = Vectors.PathOf("maps/b_3host_4osd.txt");
        Assert.Equal(ExitCodes.NotFound, (await RunAsync("crush", "test", "/nonexistent/map.txt", "--rule", "0", "--num-rep", "3")).Code);
        var bad = Path.Combine(Path.GetTempPath(), $"crush-bad-{Environment.ProcessId}-{Guid.NewGuid():N}.txt");
        try
        {
            await File.WriteAllTextAsync(bad, "type 0 osd\nhost h {\n alg straw2\n item nothing\n}\n");
            var (code, _, err) = await RunAsync("crush", "test", bad, "--rule", "0", "--num-rep", "3");
            Assert.Equal(ExitCodes.InvalidInput, code);
            Assert.Contains("line 2", err, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", err, StringComparison.Ordinal); // no stack trace
        }
        finally
        {
            File.Delete(bad);
        }
        var unknownRule = await RunAsync("crush", "test", map, "--rule", "nope", "--num-rep", "3");
        Assert.Equal(ExitCodes.InvalidInput, unknownRule.Code);
        Assert.Contains("rep_host", unknownRule.Err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Usage, (await RunAsync("crush", "test", map, "--rule", "0", "--num-rep", "0")).Code);
        Assert.Equal(ExitCodes.Usage, (await RunAsync("crush", "test", map, "--rule", "0", "--num-rep", "3", "--weight", "1")).Code);
        Assert.Equal(ExitCodes.InvalidInput, (await RunAsync("crush", "test", map, "--rule", "0", "--num-rep", "3", "--weight", "99", "1")).Code);
        Assert.Equal(ExitCodes.Usage, (await RunAsync("crush", "test", map, "--rule", "0", "--num-rep", "3", "--min-x", "5", "--max-x", "1")).Code);
    }

    [Fact]
    public async Task MoreReplicasThanFailureDomains_BehavesLikeCrushtool()
    {
        var map = Vectors.PathOf("maps/b_3host_4osd.txt");
        var (code, output, _) = await RunAsync("crush", "test", map, "--rule", "0", "--num-rep", "5", "--max-x", "0");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Equal(3, Lines(output)[0].Split(' ')[1].Split(',').Length); // firstn: fewer OSDs, no placeholder
    }

    [Fact]
    public async Task Analyze_PrintsSharesSpreadAndMovement()
    {
        var map = Vectors.PathOf("maps/c_rooms_racks_hosts.txt");
        var (code, output, err) = await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3", "--pgs", "512");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains("fair share", output, StringComparison.Ordinal);
        Assert.Contains("spread:", output, StringComparison.Ordinal);
        var rows = Lines(output).Where(l => char.IsDigit(l[0])).ToList();
        Assert.True(rows.Count >= 60);
        Assert.Equal(512 * 3, rows.Sum(r => int.Parse(r.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2], System.Globalization.CultureInfo.InvariantCulture)));

        var host = Lines(await File.ReadAllTextAsync(map)).First(l => l.StartsWith("host ", StringComparison.Ordinal)).Split(' ')[1];
        var change = await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3", "--pgs", "512", "--add-osd", host + ":2.0", "--remove-osd", "3");
        Assert.True(change.Code == ExitCodes.Ok, change.Err);
        Assert.Matches(@"PGs whose acting set changes: \d+ of 512", change.Out);

        var zero = await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3", "--pgs", "512", "--add-osd", host + ":0");
        Assert.Contains("PGs whose acting set changes: 0 of 512", zero.Out, StringComparison.Ordinal);

        Assert.Equal(ExitCodes.InvalidInput, (await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3", "--add-osd", "nohost:1")).Code);
        Assert.Equal(ExitCodes.Usage, (await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3", "--add-osd", "garbage")).Code);

        var auto = await RunAsync("crush", "analyze", map, "--rule", "0", "--num-rep", "3");
        Assert.Contains("automatic", auto.Out, StringComparison.Ordinal);
    }
}

namespace Appliance.Packaging.Tests;

/// <summary>
/// The package, built once per test run by packaging/build-deb.sh (its own publish of node/Cli, incremental under
/// packaging/out/build) into a temporary folder, and unpacked there with `dpkg-deb -x`. Shared by every test class
/// of the "package" collection.
/// </summary>
public sealed class PackageFixture : IDisposable
{
    private readonly TempDir _dir = new();

    public PackageFixture()
    {
        Tool.Require("dpkg-deb", "dpkg");
        Tool.Require("dotnet", "the .NET 10 SDK");
        var script = Path.Combine(Tool.RepoRoot, "packaging", "build-deb.sh");
        var build = Tool.Run(script, ["--out", _dir.Path], TimeSpan.FromMinutes(15));
        Assert.True(build.ExitCode == 0, $"build-deb.sh failed: {build}");
        Deb = build.Stdout.TrimEnd().Split('\n')[^1];
        Version = Tool.Ok("sed", "-n", @"s:.*<Version>\([^<]*\)</Version>.*:\1:p", Path.Combine(Tool.RepoRoot, "Directory.Build.props")).Trim();
        Root = Path.Combine(_dir.Path, "root");
        Directory.CreateDirectory(Root);
        Tool.Ok("dpkg-deb", "-x", Deb, Root);
    }

    /// <summary>The .deb built.</summary>
    public string Deb { get; }

    /// <summary>The version of Directory.Build.props, which the package carries.</summary>
    public string Version { get; }

    /// <summary>The package unpacked: a temporary root holding usr/bin/appliance and the rest.</summary>
    public string Root { get; }

    public string InRoot(string path) => Path.Combine(Root, path.TrimStart('/'));

    /// <summary>A scratch folder of the fixture's own.</summary>
    public string Scratch(string name)
    {
        var p = Path.Combine(_dir.Path, name);
        Directory.CreateDirectory(p);
        return p;
    }

    public void Dispose() => _dir.Dispose();
}

[CollectionDefinition("package")]
public sealed class PackageCollection : ICollectionFixture<PackageFixture>
{
}

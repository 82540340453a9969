namespace Appliance.Packaging.Tests;

[Collection("package")]
public sealed class LintianTests(PackageFixture package)
{
    /// <summary>lintian reports no error (warnings are allowed: see packaging/README.md for the ones left).</summary>
    [Fact]
    public void Lintian_reports_no_error()
    {
        Tool.Require("lintian", "lintian");
        var r = Tool.Run("lintian", ["--tag-display-limit", "0", "--fail-on", "error", package.Deb], TimeSpan.FromMinutes(3));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.DoesNotMatch("(?m)^E: ", r.Stdout);
    }
}

# exgate hma collect-script: collects what `exgate hma check --cmdlets` reads.
# Run in the Exchange Management Shell of an on-premises server. The service principal names
# need Microsoft Graph PowerShell (Install-Module Microsoft.Graph.Applications); the script asks
# to connect, and skips that part if the module is missing.
#   .\exgate-hma-collect.ps1 -Out hma.txt -Mailbox user@contoso.com
param(
    [string]$Out = "exgate-hma.txt",
    [string]$Mailbox = ""
)
$ErrorActionPreference = "Continue"
$FormatEnumerationLimit = -1
function Run([string]$Command) {
    "[PS] exgate> $Command" | Out-File -FilePath $Out -Append -Encoding utf8 -Width 4096
    try {
        Invoke-Expression $Command | Out-String -Width 4096 | Out-File -FilePath $Out -Append -Encoding utf8 -Width 4096
    } catch {
        "# failed: $($_.Exception.Message)" | Out-File -FilePath $Out -Append -Encoding utf8
    }
}
"" | Out-File -FilePath $Out -Encoding utf8
Run 'Get-ExchangeServer | fl Name,AdminDisplayVersion,ServerRole'
Run 'Get-MapiVirtualDirectory | fl Server,Identity,InternalUrl,ExternalUrl,IISAuthenticationMethods,InternalAuthenticationMethods,ExternalAuthenticationMethods'
Run 'Get-WebServicesVirtualDirectory | fl Server,Identity,InternalUrl,ExternalUrl,InternalAuthenticationMethods,OAuthAuthentication'
Run 'Get-OabVirtualDirectory | fl Server,Identity,InternalUrl,ExternalUrl,InternalAuthenticationMethods,OAuthAuthentication'
Run 'Get-AutodiscoverVirtualDirectory | fl Server,Identity,InternalUrl,ExternalUrl,InternalAuthenticationMethods,OAuthAuthentication'
Run 'Get-ActiveSyncVirtualDirectory | fl Server,Identity,InternalUrl,ExternalUrl,InternalAuthenticationMethods'
Run 'Get-ClientAccessService | fl Name,AutoDiscoverServiceInternalUri'
Run 'Get-AuthServer | fl Name,Type,Enabled,IsDefaultAuthorizationEndpoint,DomainName,ApplicationIdentifier'
Run 'Get-PartnerApplication | fl Name,ApplicationIdentifier,Enabled,LinkedAccount'
Run 'Get-OrganizationConfig | fl OAuth2ClientProfileEnabled'
Run 'Get-AuthConfig | fl CurrentCertificateThumbprint,NextCertificateThumbprint,NextCertificateEffectiveDate'
Run 'Get-ExchangeServer | Where-Object { $_.ServerRole -notlike "*Edge*" } | ForEach-Object { Get-ExchangeCertificate -Server $_.Name } | fl Identity,Thumbprint,@{n="NotAfter";e={$_.NotAfter.ToString("o")}},Services,Subject'
Run 'Get-IntraOrganizationConnector | fl Name,TargetAddressDomains,DiscoveryEndpoint,Enabled'
if ($Mailbox) {
    Run "Test-OAuthConnectivity -Service EWS -TargetUri https://$(((Get-WebServicesVirtualDirectory | Select-Object -First 1).ExternalUrl).Host)/ews/ -Mailbox $Mailbox | fl ResultType,Detail"
}
if (Get-Module -ListAvailable Microsoft.Graph.Applications) {
    Connect-MgGraph -Scopes Application.Read.All -NoWelcome
    Run "Get-MgServicePrincipal -Filter `"AppId eq '00000002-0000-0ff1-ce00-000000000000'`" | Select-Object -ExpandProperty ServicePrincipalNames"
} else {
    "# Microsoft Graph PowerShell not installed: service principal names not collected" | Out-File -FilePath $Out -Append -Encoding utf8
}
Write-Host "Written to $Out. Run: exgate hma check --cmdlets $Out"

//! The official SDKs this project is tested against can be installed and imported.

#[test]
fn official_sdks_import() {
    let python = crate::support::python::sdk_python();
    let status = std::process::Command::new(python)
        .args([
            "-c",
            "import alibabacloud_ecs20140526.client, alibabacloud_openapi_util.client, aliyunsdkcore.client, aliyunsdkecs.request.v20140526.StartInstanceRequest",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}
